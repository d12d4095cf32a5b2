/* What an engine found on this machine, with gpu_layers -1 (as many as fit) and 0 (the CPU):
   device, layers and where they went, the fallback reason, the CPU variant, and a few greedy
   tokens from each. scripts/gpu-check.sh runs it; exits 1 if an engine cannot be made.

     engine-info MODEL.gguf */
#include <minerva.h>
#include <stdio.h>

static minerva_control on_token(void *user_data, const char *text, size_t len) {
    (void)user_data;
    fwrite(text, 1, len, stdout);
    return MINERVA_CONTINUE;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: engine-info MODEL.gguf\n");
        return 2;
    }
    for (int layers = -1; layers <= 0; layers++) {
        minerva_engine_params p;
        minerva_engine_params_init(&p, sizeof p);
        p.gpu_layers = layers;
        minerva_engine *e;
        if (minerva_engine_new(argv[1], &p, &e) != MINERVA_OK) {
            printf("gpu_layers %d: %s\n", layers, minerva_last_error());
            return 1;
        }
        minerva_engine_info i = {0};
        i.struct_size = sizeof i;
        minerva_engine_get_info(e, &i);
        printf("gpu_layers %d: device kind %u, %s; %d of %d layers (%s); fallback '%s'; cpu %s\n",
               layers, i.device_kind, i.device_name, i.gpu_layers, i.total_layers, i.devices,
               i.fallback_reason, i.cpu_variant);
        minerva_generate_params g;
        minerva_generate_params_init(&g, sizeof g);
        g.max_tokens = 24;
        g.temperature = 0;
        printf("  text: The lighthouse keeper said");
        minerva_status st = minerva_generate(e, "The lighthouse keeper said", &g, on_token, NULL, NULL);
        printf("\n");
        if (st != MINERVA_OK) {
            printf("  generate: %s\n", minerva_status_str(st));
            minerva_engine_free(e);
            return 1;
        }
        minerva_engine_free(e);
    }
    return 0;
}
