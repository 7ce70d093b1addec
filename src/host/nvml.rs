//! NVIDIA power through NVML, loaded at run time so the binary runs on machines without the
//! NVIDIA libraries (a missing library is "unavailable", never an error). NVML calls wake a
//! sleeping GPU, so callers ask only for GPUs whose runtime status is not `suspended`.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};

type NvmlReturn = c_int;
type Device = *mut c_void;

/// Current draw in watts of the GPU at `bus_id` (`0000:07:00.0`), or why it is unknown.
pub fn power_watts(bus_id: &str) -> Result<f64, String> {
    // SAFETY: NVML's documented C ABI: nvmlInit_v2(), nvmlDeviceGetHandleByPciBusId_v2(const
    // char*, nvmlDevice_t*), nvmlDeviceGetPowerUsage(nvmlDevice_t, unsigned int* mW),
    // nvmlShutdown(). The library stays loaded for the calls' duration.
    unsafe {
        let lib = libloading::Library::new("libnvidia-ml.so.1").map_err(|_| {
            "NVML not available (libnvidia-ml.so.1 not found): no live NVIDIA figure".to_string()
        })?;
        let init: libloading::Symbol<unsafe extern "C" fn() -> NvmlReturn> = lib
            .get(b"nvmlInit_v2\0")
            .map_err(|e| format!("NVML: {e}"))?;
        let shutdown: libloading::Symbol<unsafe extern "C" fn() -> NvmlReturn> = lib
            .get(b"nvmlShutdown\0")
            .map_err(|e| format!("NVML: {e}"))?;
        let by_bus: libloading::Symbol<
            unsafe extern "C" fn(*const c_char, *mut Device) -> NvmlReturn,
        > = lib
            .get(b"nvmlDeviceGetHandleByPciBusId_v2\0")
            .map_err(|e| format!("NVML: {e}"))?;
        let usage: libloading::Symbol<unsafe extern "C" fn(Device, *mut c_uint) -> NvmlReturn> =
            lib.get(b"nvmlDeviceGetPowerUsage\0")
                .map_err(|e| format!("NVML: {e}"))?;
        if init() != 0 {
            return Err("NVML failed to initialise (driver not loaded?)".into());
        }
        let id = CString::new(bus_id).map_err(|_| "bad bus id".to_string())?;
        let mut dev: Device = std::ptr::null_mut();
        let result = if by_bus(id.as_ptr(), &mut dev) != 0 {
            Err(format!("NVML does not know {bus_id}"))
        } else {
            let mut mw: c_uint = 0;
            match usage(dev, &mut mw) {
                0 => Ok(f64::from(mw) / 1000.0),
                code => Err(format!("NVML reports no power for {bus_id} (error {code})")),
            }
        };
        shutdown();
        result
    }
}
