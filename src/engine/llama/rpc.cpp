// ggml's RPC backend, as minerva uses it: the client side (a server's devices, to put layers on)
// and the server (minerva-rpc-server). Wrappers in the style of shim.cpp: every exception is
// caught and its message kept for mshim_take_error(), through mshim_guard().
//
// The RPC backend is reached through ggml's registry ("RPC"), whether it is built in or loaded
// as a backend file: its functions are looked up by name, as llama.cpp's own tools do.

#include "ggml-backend-impl.h" // struct ggml_backend_device, to advertise a chosen memory size
#include "ggml-backend.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>

extern "C" int mshim_guard(void (*fn)(void *), void *ctx) noexcept;

namespace {

template <typename F> int guarded(F &&f) noexcept {
    using Fn = std::remove_reference_t<F>;
    return mshim_guard([](void *c) { (*static_cast<Fn *>(c))(); }, &f);
}

template <typename T> T rpc_proc(const char *name) {
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (!rpc) throw std::runtime_error("this build of minerva has no RPC backend (libggml-rpc)");
    auto fn = reinterpret_cast<T>(ggml_backend_reg_get_proc_address(rpc, name));
    if (!fn) throw std::runtime_error(std::string("the RPC backend has no ") + name);
    return fn;
}

// The server's device with the memory it advertises replaced by --mem: a copy of the real
// device (same functions, same context) whose get_memory answers the chosen size, and whose
// backends point back at the copy, since the server asks a backend's device for its memory.
ggml_backend_dev_t real_device = nullptr;
ggml_backend_device advertised_device;
size_t advertised_bytes = 0;

void advertised_memory(ggml_backend_dev_t, size_t *free, size_t *total) {
    *free = advertised_bytes;
    *total = advertised_bytes;
}

ggml_backend_t advertised_init_backend(ggml_backend_dev_t dev, const char *params) {
    ggml_backend_t backend = real_device->iface.init_backend(real_device, params);
    if (backend) backend->device = dev;
    return backend;
}

} // namespace

extern "C" {

// The registry entry of the RPC server at `endpoint` ("host:port"), with its devices. ggml
// connects to ask for them, and aborts the process if it cannot: check the server first.
int mshim_rpc_add_server(const char *endpoint, ggml_backend_reg_t *out) noexcept {
    return guarded([&] {
        using add_server_t = ggml_backend_reg_t (*)(const char *);
        *out = rpc_proc<add_server_t>("ggml_backend_rpc_add_server")(endpoint);
        if (!*out) throw std::runtime_error("the RPC server has no device");
    });
}

// Serves this machine's best device (a GPU if there is one, else the CPU) at `endpoint` until
// the process ends; returns (an error) only when it cannot listen. `mem_bytes` > 0: the memory
// the server advertises, instead of the device's own.
int mshim_rpc_serve(const char *endpoint, size_t mem_bytes, size_t threads) noexcept {
    return guarded([&] {
        using start_server_t =
            void (*)(const char *, const char *, size_t, size_t, ggml_backend_dev_t *);
        auto start = rpc_proc<start_server_t>("ggml_backend_rpc_start_server");
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
        if (!dev) dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (!dev) throw std::runtime_error("no device to serve");
        if (mem_bytes > 0) {
            real_device = dev;
            advertised_device = *dev;
            advertised_device.iface.get_memory = advertised_memory;
            advertised_device.iface.init_backend = advertised_init_backend;
            advertised_bytes = mem_bytes;
            dev = &advertised_device;
        }
        start(endpoint, nullptr, threads, 1, &dev);
        throw std::runtime_error(std::string("cannot serve on ") + endpoint +
                                 " (the address is in use or not this machine's)");
    });
}

} // extern "C"
