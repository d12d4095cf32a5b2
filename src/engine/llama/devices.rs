//! The compute devices ggml knows of (CPU, GPUs), with their free memory.

use super::init_backend;
use super::shim::{self, check};
use llama_cpp_sys_2 as sys;
use std::ffi::CStr;

/// What kind of device a ggml device is. Values are the C API's `minerva_device_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceKind {
    Cpu = 0,
    Cuda = 1,
    Metal = 2,
    Vulkan = 3,
    Other = 4,
    /// A device of an RPC server (`minerva_engine_params.rpc_servers`).
    Rpc = 5,
}

/// A compute device that ggml knows of.
#[derive(Clone, Debug)]
pub struct Device {
    pub(super) raw: sys::ggml_backend_dev_t,
    pub kind: DeviceKind,
    pub is_gpu: bool,
    /// ggml's name, e.g. "CUDA0", "RPC0".
    pub name: String,
    /// e.g. the GPU's model, or an RPC server's "host:port".
    pub description: String,
    pub free_bytes: usize,
}

// SAFETY: a ggml device handle points into ggml's static device registry, which lives for the whole
// process and is safe to query from any thread.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

fn cstr_lossy(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings that live as long as the registry.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Every device ggml can use, in registry order. RPC servers' devices are not among them:
/// minerva never registers those globally (see [`rpc_devices`]).
pub fn devices() -> Vec<Device> {
    init_backend();
    // SAFETY: indices below ggml_backend_dev_count() are valid; the handles are static.
    (0..unsafe { sys::ggml_backend_dev_count() })
        .filter_map(|i| device(unsafe { sys::ggml_backend_dev_get(i) }))
        .collect()
}

/// The devices of the RPC server at `endpoint` ("host:port"). ggml connects to the server to
/// list them and aborts the process when it cannot: call only for a server just checked
/// (engine::rpc). They are not added to ggml's registry, so a server stays out of every other
/// engine's device list.
pub fn rpc_devices(endpoint: &str) -> Result<Vec<Device>, String> {
    init_backend();
    let c = std::ffi::CString::new(endpoint).map_err(|_| "a NUL in the address".to_string())?;
    let mut reg: sys::ggml_backend_reg_t = std::ptr::null_mut();
    // SAFETY: c is NUL-terminated; reg receives a registry entry that lives for the process.
    check(
        unsafe { shim::mshim_rpc_add_server(c.as_ptr(), &mut reg) },
        "RPC",
    )
    .map_err(|e| e.message)?;
    // SAFETY: reg is a valid registry entry; indices below its device count are valid.
    let n = unsafe { sys::ggml_backend_reg_dev_count(reg) };
    Ok((0..n)
        .filter_map(|i| device(unsafe { sys::ggml_backend_reg_dev_get(reg, i) }))
        .collect())
}

/// A device from ggml's handle, with its kind and free memory (None for NULL).
fn device(raw: sys::ggml_backend_dev_t) -> Option<Device> {
    if raw.is_null() {
        return None;
    }
    // SAFETY: raw is a valid device handle, which lives for the whole process.
    unsafe {
        let ty = sys::ggml_backend_dev_type(raw);
        let reg = sys::ggml_backend_dev_backend_reg(raw);
        let reg_name = if reg.is_null() {
            String::new()
        } else {
            cstr_lossy(sys::ggml_backend_reg_name(reg))
        };
        let is_gpu =
            ty == sys::GGML_BACKEND_DEVICE_TYPE_GPU || ty == sys::GGML_BACKEND_DEVICE_TYPE_IGPU;
        let kind = if ty == sys::GGML_BACKEND_DEVICE_TYPE_CPU {
            DeviceKind::Cpu
        } else {
            match reg_name.to_ascii_lowercase().as_str() {
                "cuda" => DeviceKind::Cuda,
                "metal" | "mtl" => DeviceKind::Metal,
                "vulkan" => DeviceKind::Vulkan,
                n if n.starts_with("rpc") => DeviceKind::Rpc,
                _ => DeviceKind::Other,
            }
        };
        let (mut free, mut total) = (0usize, 0usize);
        let _ = check(
            shim::mshim_dev_memory(raw, &mut free, &mut total),
            "device memory",
        );
        Some(Device {
            raw,
            kind,
            is_gpu,
            name: cstr_lossy(sys::ggml_backend_dev_name(raw)),
            description: cstr_lossy(sys::ggml_backend_dev_description(raw)),
            free_bytes: free,
        })
    }
}
