//! Devices: the GPU chosen for a model and how many of its layers it takes, with retries and the
//! CPU as the fallback. (CPU threads and host memory: `host.rs`.)

use super::callback::callback_scope;
use super::error::{Error, Result, Status};
use super::llama::{self, DeviceKind, Model, ModelLoad};
use super::log;
use super::params::EngineConfig;
use super::rpc;
use std::ffi::CStr;

/// Whether tokens are picked inside llama.cpp's graph, on the device that computes the logits:
/// on a GPU (greedy, and sampling chains without grammar, bias or penalties; the 262,144 logits
/// of a row then neither cross to the host nor get sorted there), not on the CPU, where ggml's
/// one-thread argmax made a step of the tiny model 1.8x slower than minerva's own vector argmax,
/// nor on an RPC server (its ops are the remote CPU's). `MINERVA_BACKEND_SAMPLING=1` or `0`
/// overrides (diagnostics and tests).
pub(crate) fn samples_on_backend(output: DeviceKind) -> bool {
    match std::env::var("MINERVA_BACKEND_SAMPLING").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !matches!(output, DeviceKind::Cpu | DeviceKind::Rpc),
    }
}

/// Where `gpu_layers = -1` puts a model: llama.cpp's `n_gpu_layers` (the output layer counts as
/// one; -1: all) and whether the output layer stays on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fit {
    pub gpu_layers: i32,
    pub output_on_cpu: bool,
}

/// The memory a model needs on a device, from its file and the engine's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Needs {
    pub n_layer: u32,
    /// One repeating layer: its weights and its share of the KV cache.
    pub per_layer: u64,
    /// The output layer's matrix and its rows of logits.
    pub output: u64,
    /// Compute buffers of a micro-batch on a device that holds layers (attention scores over the
    /// whole cache, activations).
    pub compute: u64,
}

impl Needs {
    pub fn of(s: &llama::GgufSummary, file_bytes: u64, config: &EngineConfig) -> Option<Needs> {
        let n = s.block_count.filter(|&n| n > 0)? as u64;
        let cells = config.context_tokens as u64 * config.max_streams as u64;
        let kv_per_layer = s
            .kv_bytes_per_token()
            .map_or(0, |b| b / n)
            .saturating_mul(cells);
        // Without the tensor table's sizes (never for a file minerva checked): the file split
        // evenly, the output layer as one more layer.
        let (layers, output) = if s.layer_bytes > 0 {
            (s.layer_bytes, s.output_bytes)
        } else {
            (file_bytes / (n + 1) * n, file_bytes / (n + 1))
        };
        let ubatch = config.batch_tokens.min(512) as u64;
        let heads = s.head_count.unwrap_or(1) as u64;
        let embd = s.embedding_length.unwrap_or(0) as u64;
        let logits = s.n_vocab.unwrap_or(0) * config.max_streams as u64 * 4;
        Some(Needs {
            n_layer: n as u32,
            per_layer: layers / n + kv_per_layer,
            output: output + logits,
            compute: ubatch
                .saturating_mul(cells.saturating_mul(heads) + 16 * embd)
                .saturating_mul(4),
        })
    }
}

/// What fits in the devices' free memory, each keeping room for its compute buffers (`compute`,
/// and a twentieth of its memory, at least 32 MiB, for what the estimate misses): every layer if
/// all fit; else the output layer (llama.cpp offloads it first: it is the largest single matrix
/// product) and as many layers as fit beside it; else, when the output layer leaves no room for
/// one layer, as many layers as fit with the output layer on the CPU (a GPU mostly taken by a
/// game's graphics still gets the layers it can hold).
pub(crate) fn fit(devs: &[llama::Device], needs: &Needs) -> Fit {
    let budget: u64 = devs
        .iter()
        .map(|d| {
            let free = d.free_bytes as u64;
            let room = (free / 20).max(32 << 20) + needs.compute;
            free.saturating_sub(room)
        })
        .sum();
    let per_layer = needs.per_layer.max(1);
    let n = needs.n_layer as u64;
    if budget >= needs.output + n * per_layer {
        return Fit {
            gpu_layers: -1,
            output_on_cpu: false,
        };
    }
    if budget >= needs.output + per_layer {
        let layers = (budget - needs.output) / per_layer;
        return Fit {
            gpu_layers: layers as i32 + 1,
            output_on_cpu: false,
        };
    }
    let layers = (budget / per_layer).min(n);
    Fit {
        gpu_layers: if layers == 0 { 0 } else { layers as i32 + 1 },
        output_on_cpu: layers > 0,
    }
}

/// Where llama.cpp puts a model's layers when `gpu_layers` of its `n_layer` + 1 (the output
/// layer counts as one) go to `devs`, split by free memory as llama.cpp splits them
/// (llama-model.cpp, load_tensors).
pub(crate) struct Split {
    /// Repeating layers on each device, then on the CPU (the last entry).
    pub layers: Vec<i32>,
    /// Which of those holds the output layer.
    pub output: usize,
}

pub(crate) fn layer_split(
    devs: &[llama::Device],
    gpu_layers: i32,
    n_layer: i32,
    output_on_cpu: bool,
) -> Split {
    let units = n_layer + 1;
    let ngl = if gpu_layers < 0 {
        units
    } else {
        gpu_layers.min(units)
    };
    let mut split = Split {
        layers: vec![0; devs.len() + 1],
        output: devs.len(),
    };
    let mut points: Vec<f32> = devs.iter().map(|d| d.free_bytes as f32).collect();
    let mut sum = 0.0f32;
    for s in points.iter_mut() {
        sum += *s;
        *s = sum;
    }
    for s in points.iter_mut() {
        *s /= if sum > 0.0 { sum } else { 1.0 };
    }
    let start = (units - ngl).max(0);
    let active = if devs.is_empty() { 0 } else { ngl };
    for il in 0..units {
        let at = if il < start || il - start >= active {
            devs.len()
        } else {
            let x = (il - start) as f32 / active as f32;
            points.partition_point(|&s| s <= x).min(devs.len() - 1)
        };
        if il == n_layer {
            split.output = if output_on_cpu { devs.len() } else { at };
        } else {
            split.layers[at] += 1;
        }
    }
    split
}

impl Split {
    /// "RPC0 (10.0.0.2:50052): 10 layers, CPU: 8 layers + output", from the devices' labels
    /// (the CPU's last).
    fn describe(&self, labels: &[String]) -> String {
        self.layers
            .iter()
            .enumerate()
            .filter(|&(i, &n)| n > 0 || i == self.output)
            .map(|(i, n)| {
                let output = if i == self.output { " + output" } else { "" };
                format!("{}: {n} layers{output}", labels[i])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Loads with `first` layers offloaded (negative: all `n_layers`), and after each failure with
/// half as many, down to one. Returns the model with the layers it holds, or the last failure's
/// words (None when the load was aborted by the progress callback). Every failure is logged.
pub(crate) fn load_with_retries<T>(
    first: i32,
    n_layers: i32,
    device: &str,
    mut load: impl FnMut(i32) -> std::result::Result<T, llama::LoadError>,
) -> std::result::Result<(T, i32), Option<String>> {
    let mut layers = first;
    loop {
        match load(layers) {
            Ok(m) => return Ok((m, layers)),
            Err(llama::LoadError::Aborted) => return Err(None),
            Err(llama::LoadError::Failed(why)) => {
                let tried = if layers < 0 { n_layers } else { layers };
                let reason = format!(
                    "loading {tried} layers on {device} failed: {}",
                    if why.is_empty() {
                        "unknown error"
                    } else {
                        why.trim()
                    }
                );
                let next = tried / 2;
                if next == 0 {
                    log::log_warn!("{reason}; falling back to the CPU");
                    return Err(Some(reason));
                }
                log::log_warn!("{reason}; retrying with {next} layers");
                layers = next;
            }
        }
    }
}

/// Where the model was loaded, and why there if a GPU was asked for and not used.
pub(crate) struct Placed {
    pub model: Model,
    pub device_kind: DeviceKind,
    pub device_name: String,
    pub fallback_reason: String,
    pub gpu_layers: i32,
    /// Free memory of the devices that hold layers (None on the CPU).
    pub gpu_free_bytes: Option<u64>,
    /// Each device used with its layers, e.g. "RPC0 (127.0.0.1:50052): 18 layers + output".
    pub devices: String,
    /// The kind of device that computes the output layer (the logits).
    pub output_kind: DeviceKind,
}

/// Loads the model on the GPU with the most free memory and the RPC servers' devices, with
/// `config.gpu_layers` (as many as fit for -1) spread over them as llama.cpp spreads them,
/// retrying with fewer layers after a failure, else on the CPU. `progress` may abort the load.
pub(crate) fn load_model(
    path: &str,
    cpath: &CStr,
    file_bytes: u64,
    summary: &llama::GgufSummary,
    config: &EngineConfig,
    mut progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<Placed> {
    let devices = llama::devices();
    if devices.is_empty() {
        return Err(Error::new(
            Status::Backend,
            format!(
                "no compute backend is loaded{} (the default build needs its libggml-cpu-*.so \
                 files in the minerva/ folder beside libminerva, or in $MINERVA_BACKEND_DIR)",
                llama::backend_error().map_or(String::new(), |why| format!(": {why}"))
            ),
        ));
    }
    let cpu_name = devices
        .iter()
        .find(|d| d.kind == DeviceKind::Cpu)
        .map(|d| d.description.clone())
        .unwrap_or_else(|| "CPU".into());
    // The servers first (each checked: ggml aborts on one it cannot reach), then their devices.
    let mut lease = None;
    let mut remote = Vec::new();
    if !config.rpc_servers.is_empty() {
        lease = Some(rpc::acquire(&config.rpc_servers)?);
        rpc::ignore_sigpipe();
        for e in &config.rpc_servers {
            let devs = llama::rpc_devices(e)
                .map_err(|why| Error::new(Status::Backend, format!("RPC server {e}: {why}")))?;
            remote.extend(devs);
        }
    }
    let offload: Vec<llama::Device> = devices
        .into_iter()
        .filter(|d| d.is_gpu)
        .max_by_key(|d| d.free_bytes)
        .into_iter()
        .chain(remote)
        .collect();
    let label = |d: &llama::Device| match d.kind {
        DeviceKind::Rpc => format!("{} ({})", d.name, d.description),
        _ => d.description.clone(),
    };
    let names = offload.iter().map(label).collect::<Vec<_>>().join(", ");
    let mut progress_wrapped = progress
        .as_mut()
        .map(|f| move |p: f32| callback_scope(|| f(p)));
    let mut load = |devs: &[llama::Device], layers: i32, output_on_cpu: bool| {
        Model::load(
            cpath,
            ModelLoad {
                devices: devs,
                gpu_layers: layers,
                output_on_cpu,
                use_mmap: config.use_mmap,
                progress: progress_wrapped
                    .as_mut()
                    .map(|f| f as &mut dyn FnMut(f32) -> bool),
            },
        )
    };
    let aborted = || {
        Error::new(
            Status::Cancelled,
            "model load cancelled by the progress callback",
        )
    };
    let mut fallback_reason = String::new();
    if config.gpu_layers != 0 {
        if offload.is_empty() {
            fallback_reason = if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal"))
            {
                "no usable GPU device was found".into()
            } else if cfg!(feature = "portable") {
                "no GPU backend was loaded (a libggml-cuda.so, libggml-vulkan.so or \
                 libggml-hip.so in minerva's backend folder: docs/GPU.md) and no rpc_servers \
                 were given"
                    .into()
            } else {
                "minerva was built without a GPU backend (cargo features cuda, vulkan, metal) \
                 and no rpc_servers were given"
                    .into()
            };
        } else {
            let block_count = summary.block_count;
            let Fit {
                gpu_layers: layers,
                output_on_cpu,
            } = match Needs::of(summary, file_bytes, config) {
                Some(needs) if config.gpu_layers < 0 => {
                    let f = fit(&offload, &needs);
                    log::log_info!(
                        "fitting layers: {} MiB free on {names}; a layer needs {} MiB, the output \
                         layer {} MiB, compute {} MiB: {}",
                        offload.iter().map(|d| d.free_bytes as u64).sum::<u64>() >> 20,
                        needs.per_layer >> 20,
                        needs.output >> 20,
                        needs.compute >> 20,
                        match (f.gpu_layers, f.output_on_cpu) {
                            (-1, _) => "all".to_string(),
                            (0, _) => "none".to_string(),
                            (l, false) => format!("{} layers and the output layer", l - 1),
                            (l, true) => format!("{} layers, the output layer on the CPU", l - 1),
                        }
                    );
                    f
                }
                _ => Fit {
                    gpu_layers: config.gpu_layers,
                    output_on_cpu: false,
                },
            };
            let free: u64 = offload.iter().map(|d| d.free_bytes as u64).sum();
            if layers == 0 {
                fallback_reason = format!(
                    "{names} {} {} MiB free, too little for one layer",
                    if offload.len() == 1 { "has" } else { "have" },
                    free >> 20
                );
            } else {
                // Out of device memory: retry with half the layers, down to one, then the CPU.
                let n_layers = block_count.unwrap_or(1).max(1) as i32;
                match load_with_retries(layers, n_layers, &names, |l| {
                    load(&offload, l, output_on_cpu)
                }) {
                    Ok((mut model, used)) => {
                        // The servers hold weights: in use until the model is freed, wherever
                        // its last reference goes.
                        if let Some(lease) = lease {
                            model.keep_until_freed(Box::new(lease));
                        }
                        let split = layer_split(&offload, used, model.n_layer(), output_on_cpu);
                        let (most, _) = split.layers[..offload.len()]
                            .iter()
                            .enumerate()
                            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
                            .expect("at least one device");
                        let mut labels: Vec<String> = offload.iter().map(label).collect();
                        labels.push("CPU".into());
                        // The device that holds most of the model: the CPU if it keeps more.
                        let (device_kind, device_name) =
                            if split.layers[offload.len()] > split.layers[most] {
                                (DeviceKind::Cpu, cpu_name)
                            } else {
                                (offload[most].kind, label(&offload[most]))
                            };
                        let output_kind = offload
                            .get(split.output)
                            .map_or(DeviceKind::Cpu, |d| d.kind);
                        return Ok(Placed {
                            output_kind,
                            gpu_layers: split.layers[..offload.len()].iter().sum(),
                            devices: split.describe(&labels),
                            device_kind,
                            device_name,
                            fallback_reason,
                            gpu_free_bytes: Some(free),
                            model,
                        });
                    }
                    Err(None) => return Err(aborted()),
                    Err(Some(reason)) => fallback_reason = reason,
                }
            }
        }
    }
    let model = load(&[], 0, false).map_err(|e| match e {
        llama::LoadError::Aborted => aborted(),
        llama::LoadError::Failed(why) => Error::new(
            Status::Model,
            format!(
                "cannot load model '{path}': {}",
                if why.is_empty() {
                    "llama.cpp refused the file".to_string()
                } else {
                    why.trim().to_string()
                }
            ),
        ),
    })?;
    let n = model.n_layer();
    Ok(Placed {
        model,
        device_kind: DeviceKind::Cpu,
        device_name: cpu_name,
        fallback_reason,
        gpu_layers: 0,
        gpu_free_bytes: None,
        devices: format!("CPU: {n} layers + output"),
        output_kind: DeviceKind::Cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::load_with_retries;
    use crate::engine::llama::LoadError;

    #[test]
    fn gpu_load_retries_with_half_the_layers_down_to_one() {
        // A device where only 4 layers fit: all (18) fail, then 9, then 4 loads.
        let mut tried = Vec::new();
        let r = load_with_retries(-1, 18, "GPU", |l| {
            tried.push(l);
            if !(0..=4).contains(&l) {
                Err(LoadError::Failed("out of memory".into()))
            } else {
                Ok(l)
            }
        });
        assert_eq!(tried, vec![-1, 9, 4]);
        assert!(matches!(r, Ok((4, 4))));
    }

    #[test]
    fn gpu_load_falls_back_after_one_layer() {
        let mut tried = Vec::new();
        let r: Result<(u8, i32), _> = load_with_retries(12, 18, "GPU", |l| {
            tried.push(l);
            Err(LoadError::Failed("out of memory".into()))
        });
        assert_eq!(tried, vec![12, 6, 3, 1]);
        let reason = r.err().flatten().unwrap();
        assert!(
            reason.contains("loading 1 layers on GPU failed: out of memory"),
            "{reason}"
        );
    }

    #[test]
    fn an_aborted_gpu_load_is_not_retried() {
        let mut n = 0;
        let r: Result<(u8, i32), _> = load_with_retries(-1, 18, "GPU", |_| {
            n += 1;
            Err(LoadError::Aborted)
        });
        assert_eq!(n, 1);
        assert!(matches!(r, Err(None)));
    }
}
