"""LoRA adapters for the default model, in llama.cpp's adapter format (general.type "adapter",
adapter.type "lora", adapter.lora.alpha, *.lora_a / *.lora_b tensor pairs), with seeded random
weights, for minerva's tests and benchmarks:
  voice.gguf       rank 8 on every block's ffn_down: changes the model's text.
  calm.gguf        rank 4 on every block's attn_output, smaller: another voice.
  wrong-shape.gguf like voice.gguf, but its lora_a is one column too wide: llama.cpp refuses it.
Usage: lora-adapters.py MODEL_GGUF OUT_DIR"""
import os
import sys
import numpy as np
from gguf import GGUFReader, GGUFWriter

src, out = sys.argv[1:3]
r = GGUFReader(src)
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}  # ggml order: [n_in, n_out]
blocks = int(r.fields[f"{arch}.block_count"].parts[-1][0])
rng = np.random.default_rng(20261205)

def adapter(path, tensor, rank, std, widen=0):
    w = GGUFWriter(path, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    for i in range(blocks):
        name = f"blk.{i}.{tensor}.weight"
        n_in, n_out = shapes[name]
        a = (rng.standard_normal((rank, n_in + widen)) * std).astype(np.float32)
        b = (rng.standard_normal((n_out, rank)) * std).astype(np.float32)
        w.add_tensor(name + ".lora_a", a)
        w.add_tensor(name + ".lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

os.makedirs(out, exist_ok=True)
adapter(os.path.join(out, "voice.gguf.tmp"), "ffn_down", 8, 0.08)
adapter(os.path.join(out, "calm.gguf.tmp"), "attn_output", 4, 0.06)
adapter(os.path.join(out, "wrong-shape.gguf.tmp"), "ffn_down", 8, 0.08, widen=1)
for n in ["voice", "calm", "wrong-shape"]:
    os.replace(os.path.join(out, n + ".gguf.tmp"), os.path.join(out, n + ".gguf"))
