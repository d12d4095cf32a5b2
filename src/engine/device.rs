//! Devices and host resources: CPU threads, memory, the GPU chosen for a model and how many of its
//! layers it takes, with retries and the CPU as the fallback.

use super::callback::callback_scope;
use super::error::{Error, Result, Status};
use super::llama::{self, DeviceKind, Model, ModelLoad};
use super::log;
use super::params::EngineConfig;
use std::ffi::CStr;

/// The CPUs this process may run on (affinity and cgroup quota included).
fn usable_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Decoding threads for a `threads` setting: 0 is one per physical core; more than the CPUs
/// the process may use is capped there (with a warning): llama.cpp's workers spin while they
/// wait for each other, so one more thread than CPUs makes decoding tens of times slower.
pub(crate) fn decode_threads(asked: u32) -> u32 {
    let cpus = usable_cpus();
    if asked == 0 {
        return physical_cores().min(cpus).max(1);
    }
    if asked > cpus {
        log::log_warn!(
            "threads {asked} is more than the {cpus} CPUs this process may use; using {cpus}"
        );
        return cpus;
    }
    asked
}

fn physical_cores() -> u32 {
    let logical = usable_cpus();
    // Linux: count distinct (physical id, core id) pairs.
    if let Ok(s) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut cores = std::collections::HashSet::new();
        let mut phys = "";
        for line in s.lines() {
            let mut kv = line.splitn(2, ':').map(str::trim);
            match (kv.next(), kv.next()) {
                (Some("physical id"), Some(v)) => phys = v,
                (Some("core id"), Some(v)) => {
                    cores.insert((phys.to_string(), v.to_string()));
                }
                _ => {}
            }
        }
        if !cores.is_empty() {
            return (cores.len() as u32).clamp(1, logical);
        }
    }
    logical
}

/// Host memory available for new allocations (Linux: MemAvailable), if known.
pub(crate) fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How many layers to offload for `gpu_layers = -1`: all when the file fits in the device's free
/// memory with room to spare, else as many as fit.
fn layers_that_fit(dev: &llama::Device, file_bytes: u64, block_count: Option<u32>) -> i32 {
    let Some(n) = block_count.filter(|&n| n > 0) else {
        return -1;
    };
    let reserve = (dev.free_bytes as u64 / 10).max(512 << 20);
    let budget = (dev.free_bytes as u64).saturating_sub(reserve);
    let per_layer = (file_bytes / (n as u64 + 1)).max(1);
    let fit = budget / per_layer;
    if fit > n as u64 {
        -1
    } else {
        fit as i32
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
    /// Free memory of the GPU that holds layers (None on the CPU).
    pub gpu_free_bytes: Option<u64>,
}

/// Loads the model on the best GPU with `config.gpu_layers` (as many as fit for -1), retrying
/// with fewer layers after a failure, else on the CPU. `progress` may abort the load.
pub(crate) fn load_model(
    path: &str,
    cpath: &CStr,
    file_bytes: u64,
    block_count: Option<u32>,
    config: &EngineConfig,
    mut progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<Placed> {
    let devices = llama::devices();
    if devices.is_empty() {
        return Err(Error::new(
            Status::Backend,
            format!(
                "no compute backend is loaded{}{} (the default build needs its \
                 libggml-cpu-*.so files in the minerva/ folder beside libminerva, or in \
                 $MINERVA_BACKEND_DIR)",
                if llama::backend_error().is_empty() {
                    ""
                } else {
                    ": "
                },
                llama::backend_error()
            ),
        ));
    }
    let gpu = devices
        .into_iter()
        .filter(|d| d.is_gpu)
        .max_by_key(|d| d.free_bytes);
    let mut progress_wrapped = progress
        .as_mut()
        .map(|f| move |p: f32| callback_scope(|| f(p)));
    let mut load = |device: Option<&llama::Device>, layers: i32| {
        Model::load(
            cpath,
            ModelLoad {
                device,
                gpu_layers: layers,
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
        match &gpu {
            None => {
                fallback_reason = if cfg!(any(
                    feature = "cuda",
                    feature = "vulkan",
                    feature = "metal"
                )) {
                    "no usable GPU device was found".into()
                } else {
                    "minerva was built without a GPU backend (cargo features cuda, vulkan, metal)"
                        .into()
                };
            }
            Some(dev) => {
                let layers = if config.gpu_layers < 0 {
                    layers_that_fit(dev, file_bytes, block_count)
                } else {
                    config.gpu_layers
                };
                if layers == 0 {
                    fallback_reason = format!(
                        "{} has {} MiB free, too little for one layer",
                        dev.description,
                        dev.free_bytes >> 20
                    );
                } else {
                    // Out of device memory: retry with half the layers, down to one, then the CPU.
                    let n_layers = block_count.unwrap_or(1).max(1) as i32;
                    match load_with_retries(layers, n_layers, &dev.description, |l| {
                        load(Some(dev), l)
                    }) {
                        Ok((model, used)) => {
                            let n = model.n_layer();
                            return Ok(Placed {
                                gpu_layers: if used < 0 { n } else { used.min(n) },
                                model,
                                device_kind: dev.kind,
                                device_name: dev.description.clone(),
                                fallback_reason,
                                gpu_free_bytes: Some(dev.free_bytes as u64),
                            });
                        }
                        Err(None) => return Err(aborted()),
                        Err(Some(reason)) => fallback_reason = reason,
                    }
                }
            }
        }
    }
    let model = load(None, 0).map_err(|e| match e {
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
    Ok(Placed {
        model,
        device_kind: DeviceKind::Cpu,
        device_name: llama::devices()
            .into_iter()
            .find(|d| d.kind == DeviceKind::Cpu)
            .map(|d| d.description)
            .unwrap_or_else(|| "CPU".into()),
        fallback_reason,
        gpu_layers: 0,
        gpu_free_bytes: None,
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
