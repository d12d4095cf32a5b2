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
}

/// A compute device that ggml knows of.
#[derive(Clone, Debug)]
pub struct Device {
    pub(super) raw: sys::ggml_backend_dev_t,
    pub kind: DeviceKind,
    pub is_gpu: bool,
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

/// Every device ggml can use, in registry order.
pub fn devices() -> Vec<Device> {
    init_backend();
    let mut out = Vec::new();
    // SAFETY: indices below ggml_backend_dev_count() are valid; the handles are static.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let raw = sys::ggml_backend_dev_get(i);
            if raw.is_null() {
                continue;
            }
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
                    _ => DeviceKind::Other,
                }
            };
            let (mut free, mut total) = (0usize, 0usize);
            let _ = check(
                shim::mshim_dev_memory(raw, &mut free, &mut total),
                "device memory",
            );
            out.push(Device {
                raw,
                kind,
                is_gpu,
                description: cstr_lossy(sys::ggml_backend_dev_description(raw)),
                free_bytes: free,
            });
        }
    }
    out
}
