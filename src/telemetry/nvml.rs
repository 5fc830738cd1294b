//! [`NvmlSampler`]: GPU utilization and memory from NVIDIA's management library, loaded at run
//! time.
//!
//! servebench is never linked against NVML: `libnvidia-ml.so.1` ships with the driver, not with
//! CUDA, so linking would make the binary unusable on every machine without an NVIDIA driver.
//! It is opened with `dlopen` on first use; where it is missing the sampler is *unavailable*
//! (a reason, recorded once), never a failed run.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};

use futures_util::future::BoxFuture;
use libloading::Library;

use super::names::LABEL_GPU;
use super::normalize::Series;
use super::{GpuInfo, Labels, Sample, Sampler, TelemetryError, TelemetrySource};

/// The library's soname, as the driver installs it.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Where the library is looked for: the loader's search path first, then the places drivers
/// and container runtimes put it when that path does not include them.
pub const DEFAULT_LIBRARY_PATHS: &[&str] = &[
    NVML_LIBRARY,
    "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib64/libnvidia-ml.so.1",
    "/usr/lib/wsl/lib/libnvidia-ml.so.1",
];

/// The reason given where no candidate exists.
pub const NOT_FOUND_REASON: &str = "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine";

type NvmlReturn = c_int;
type Device = *mut c_void;

const NVML_SUCCESS: NvmlReturn = 0;
const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
/// `NVML_DEVICE_NAME_V2_BUFFER_SIZE`.
const NAME_BUFFER: usize = 96;
/// `NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE`.
const DRIVER_BUFFER: usize = 80;

/// `nvmlUtilization_t`: percentages over the driver's last sample period (1/6 s to 1 s).
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlMemory_t` (v1): bytes.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlMemory_v2_t`: bytes; `used` leaves out what the driver reserves for itself, as
/// `nvidia-smi` (driver ≥ 510) reports it.
#[repr(C)]
struct MemoryV2 {
    version: c_uint,
    total: c_ulonglong,
    reserved: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

impl Default for MemoryV2 {
    fn default() -> Self {
        MemoryV2 {
            // `NVML_STRUCT_VERSION(Memory, 2)`: the struct's size with the version in the top byte.
            version: (std::mem::size_of::<MemoryV2>() as c_uint) | (2 << 24),
            total: 0,
            reserved: 0,
            free: 0,
            used: 0,
        }
    }
}

/// The NVML entry points used, resolved once.
struct Api {
    init: unsafe extern "C" fn() -> NvmlReturn,
    shutdown: unsafe extern "C" fn() -> NvmlReturn,
    error_string: unsafe extern "C" fn(NvmlReturn) -> *const c_char,
    device_count: unsafe extern "C" fn(*mut c_uint) -> NvmlReturn,
    handle_by_index: unsafe extern "C" fn(c_uint, *mut Device) -> NvmlReturn,
    utilization: unsafe extern "C" fn(Device, *mut Utilization) -> NvmlReturn,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> NvmlReturn,
    /// `nvmlDeviceGetMemoryInfo_v2`, where the driver has it (≥ 510).
    memory_v2: Option<unsafe extern "C" fn(Device, *mut MemoryV2) -> NvmlReturn>,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> NvmlReturn,
    driver_version: unsafe extern "C" fn(*mut c_char, c_uint) -> NvmlReturn,
}

/// An initialized NVML with its devices. Shut down on drop.
struct Nvml {
    api: Api,
    devices: Vec<(u32, Device)>,
    gpus: Vec<GpuInfo>,
    // Last, so the function pointers above never outlive the mapping (fields drop in order).
    _lib: Library,
}

// SAFETY: NVML is documented thread-safe; a device handle is an opaque pointer valid until
// `nvmlShutdown`, which only `Drop` calls. The value is used by one thread at a time.
unsafe impl Send for Nvml {}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: init succeeded (an `Nvml` exists only then); shutdown balances it.
        unsafe {
            (self.api.shutdown)();
        }
    }
}

impl Nvml {
    /// Load the library from the first candidate that opens, initialize it, enumerate devices.
    fn open(paths: &[String]) -> Result<Nvml, TelemetryError> {
        let lib = load_library(paths)?;
        // SAFETY: each symbol is looked up by its documented name and given its documented C
        // signature (nvml.h, API v2 names where a v2 exists).
        let api = unsafe {
            Api {
                init: symbol(&lib, b"nvmlInit_v2\0")?,
                shutdown: symbol(&lib, b"nvmlShutdown\0")?,
                error_string: symbol(&lib, b"nvmlErrorString\0")?,
                device_count: symbol(&lib, b"nvmlDeviceGetCount_v2\0")?,
                handle_by_index: symbol(&lib, b"nvmlDeviceGetHandleByIndex_v2\0")?,
                utilization: symbol(&lib, b"nvmlDeviceGetUtilizationRates\0")?,
                memory: symbol(&lib, b"nvmlDeviceGetMemoryInfo\0")?,
                memory_v2: symbol(&lib, b"nvmlDeviceGetMemoryInfo_v2\0").ok(),
                name: symbol(&lib, b"nvmlDeviceGetName\0")?,
                driver_version: symbol(&lib, b"nvmlSystemGetDriverVersion\0")?,
            }
        };
        // SAFETY: no arguments.
        let rc = unsafe { (api.init)() };
        if rc != NVML_SUCCESS {
            return Err(TelemetryError::Unavailable(format!(
                "NVML is installed but did not start: {} (code {rc}); is the NVIDIA driver loaded (nvidia-smi)?",
                error_text(&api, rc)
            )));
        }
        let mut nvml = Nvml {
            api,
            devices: Vec::new(),
            gpus: Vec::new(),
            _lib: lib,
        };
        nvml.enumerate()?;
        Ok(nvml)
    }

    fn check(&self, call: &'static str, rc: NvmlReturn) -> Result<(), TelemetryError> {
        if rc == NVML_SUCCESS {
            Ok(())
        } else {
            Err(TelemetryError::Nvml {
                call,
                code: rc,
                message: error_text(&self.api, rc),
            })
        }
    }

    fn enumerate(&mut self) -> Result<(), TelemetryError> {
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid out-pointer.
        self.check("nvmlDeviceGetCount_v2", unsafe {
            (self.api.device_count)(&mut count)
        })?;
        if count == 0 {
            return Err(TelemetryError::Unavailable(
                "NVML started but reports no GPU on this machine".into(),
            ));
        }
        let driver = self.driver_version();
        for index in 0..count {
            let mut dev: Device = std::ptr::null_mut();
            // SAFETY: `dev` is a valid out-pointer; index < count.
            let rc = unsafe { (self.api.handle_by_index)(index, &mut dev) };
            // A device that cannot be opened (lost, no permission) is left out; the others
            // are still sampled.
            if rc != NVML_SUCCESS {
                continue;
            }
            let total = self.memory(dev).ok().flatten().map(|m| m.total);
            self.gpus.push(GpuInfo {
                index: index.to_string(),
                name: self.device_name(dev),
                driver_version: driver.clone(),
                memory_total_bytes: total,
                source: TelemetrySource::Nvml,
            });
            self.devices.push((index, dev));
        }
        if self.devices.is_empty() {
            return Err(TelemetryError::Unavailable(format!(
                "NVML reports {count} GPU(s) but none could be opened; check permissions on /dev/nvidia*"
            )));
        }
        Ok(())
    }

    fn driver_version(&self) -> Option<String> {
        let mut buf = [0 as c_char; DRIVER_BUFFER];
        // SAFETY: the buffer and its length match.
        let rc = unsafe { (self.api.driver_version)(buf.as_mut_ptr(), DRIVER_BUFFER as c_uint) };
        (rc == NVML_SUCCESS).then(|| c_string(&buf))
    }

    fn device_name(&self, dev: Device) -> Option<String> {
        let mut buf = [0 as c_char; NAME_BUFFER];
        // SAFETY: valid handle; the buffer and its length match.
        let rc = unsafe { (self.api.name)(dev, buf.as_mut_ptr(), NAME_BUFFER as c_uint) };
        (rc == NVML_SUCCESS).then(|| c_string(&buf))
    }

    /// One reading of every device. Unsupported readings (utilization on a MIG instance) are
    /// left out; an error is returned only when no reading at all succeeded.
    fn read(&self) -> Result<Vec<Sample>, TelemetryError> {
        let mut out = Vec::with_capacity(self.devices.len() * 4);
        let mut first_error = None;
        for &(index, dev) in &self.devices {
            let labels = Labels::from([(LABEL_GPU.to_string(), index.to_string())]);
            let push = |out: &mut Vec<Sample>, series, value| {
                out.push(Sample::normalized(
                    series,
                    TelemetrySource::Nvml,
                    labels.clone(),
                    value,
                ))
            };
            let mut util = Utilization::default();
            // SAFETY: valid handle and out-pointer.
            match unsafe { (self.api.utilization)(dev, &mut util) } {
                NVML_SUCCESS => push(&mut out, Series::GpuUtilPct, f64::from(util.gpu)),
                NVML_ERROR_NOT_SUPPORTED => {}
                rc => {
                    first_error.get_or_insert(self.check("nvmlDeviceGetUtilizationRates", rc));
                }
            }
            match self.memory(dev) {
                Ok(Some(mem)) => {
                    push(&mut out, Series::GpuMemUsedBytes, mem.used as f64);
                    push(&mut out, Series::GpuMemFreeBytes, mem.free as f64);
                    push(&mut out, Series::GpuMemTotalBytes, mem.total as f64);
                    if let Some(reserved) = mem.reserved {
                        push(&mut out, Series::GpuMemReservedBytes, reserved as f64);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(Err(e));
                }
            }
        }
        match first_error {
            Some(Err(e)) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }
}

/// Device memory, bytes. `used` excludes the driver's reservation where NVML can say so.
struct MemoryReading {
    total: u64,
    free: u64,
    used: u64,
    reserved: Option<u64>,
}

impl Nvml {
    /// `Ok(None)` where the device does not report memory (NOT_SUPPORTED).
    fn memory(&self, dev: Device) -> Result<Option<MemoryReading>, TelemetryError> {
        if let Some(v2) = self.api.memory_v2 {
            let mut mem = MemoryV2::default();
            // SAFETY: valid handle; out-pointer to a struct carrying its version, as v2 requires.
            if unsafe { v2(dev, &mut mem) } == NVML_SUCCESS {
                return Ok(Some(MemoryReading {
                    total: mem.total,
                    free: mem.free,
                    used: mem.used,
                    reserved: Some(mem.reserved),
                }));
            }
            // Any v2 failure (an older driver's version mismatch included) falls back to v1.
        }
        let mut mem = Memory::default();
        // SAFETY: valid handle and out-pointer.
        match unsafe { (self.api.memory)(dev, &mut mem) } {
            NVML_SUCCESS => Ok(Some(MemoryReading {
                total: mem.total,
                free: mem.free,
                used: mem.used,
                reserved: None,
            })),
            NVML_ERROR_NOT_SUPPORTED => Ok(None),
            rc => self.check("nvmlDeviceGetMemoryInfo", rc).map(|()| None),
        }
    }
}

fn load_library(paths: &[String]) -> Result<Library, TelemetryError> {
    let mut other_failure = None;
    for path in paths {
        // SAFETY: loading runs the library's initializers; NVML's are those of the driver it
        // ships with, and nothing else is loaded from these paths.
        match unsafe { Library::new(path) } {
            Ok(lib) => return Ok(lib),
            Err(e) => {
                let text = e.to_string();
                if !is_not_found(&text) && other_failure.is_none() {
                    other_failure = Some(format!("{path}: {text}"));
                }
            }
        }
    }
    Err(TelemetryError::Unavailable(match other_failure {
        None => NOT_FOUND_REASON.to_string(),
        Some(detail) => format!(
            "{NVML_LIBRARY} could not be loaded ({detail}); is the NVIDIA driver installed for this architecture?"
        ),
    }))
}

fn is_not_found(loader_error: &str) -> bool {
    loader_error.contains("No such file") || loader_error.contains("cannot open shared object")
}

/// # Safety
/// `T` must be the symbol's true C function type.
unsafe fn symbol<T: Copy>(lib: &Library, name: &[u8]) -> Result<T, TelemetryError> {
    match lib.get::<T>(name) {
        Ok(sym) => Ok(*sym),
        Err(_) => Err(TelemetryError::Unavailable(format!(
            "the NVML library has no {}; the NVIDIA driver is too old (NVML API v2 needs driver 325 or later)",
            String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name))
        ))),
    }
}

fn error_text(api: &Api, rc: NvmlReturn) -> String {
    // SAFETY: nvmlErrorString returns a static NUL-terminated string for any code.
    let ptr = unsafe { (api.error_string)(rc) };
    if ptr.is_null() {
        return format!("NVML error {rc}");
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// GPU utilization and memory of every NVIDIA device on this machine, through NVML.
///
/// The library is loaded on the first `sample` (on a blocking thread: `nvmlInit` can take a
/// while) and kept until the sampler is dropped.
pub struct NvmlSampler {
    paths: Vec<String>,
    nvml: Option<Box<Nvml>>,
    gpus: Vec<GpuInfo>,
}

impl Default for NvmlSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl NvmlSampler {
    /// Looks for the library in [`DEFAULT_LIBRARY_PATHS`].
    pub fn new() -> Self {
        Self::with_library_paths(
            DEFAULT_LIBRARY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        )
    }

    /// Looks for the library only at these paths (or sonames), in order.
    pub fn with_library_paths(paths: Vec<String>) -> Self {
        NvmlSampler {
            paths,
            nvml: None,
            gpus: Vec::new(),
        }
    }

    /// Open NVML once and describe the GPUs (name, driver, memory), blocking. For the run's
    /// environment fingerprint; `Unavailable` on a machine without the driver.
    pub fn probe() -> Result<Vec<GpuInfo>, TelemetryError> {
        let paths: Vec<String> = DEFAULT_LIBRARY_PATHS
            .iter()
            .map(|p| p.to_string())
            .collect();
        Nvml::open(&paths).map(|n| n.gpus.clone())
    }
}

impl Sampler for NvmlSampler {
    fn name(&self) -> &str {
        "nvml"
    }

    fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>> {
        Box::pin(async move {
            let held = self.nvml.take();
            let paths = self.paths.clone();
            // NVML calls block (tens of µs usually, much longer at init): keep them off the
            // runtime's workers so a slow driver never stalls the load.
            let joined = tokio::task::spawn_blocking(move || {
                let nvml = match held {
                    Some(n) => n,
                    None => Box::new(Nvml::open(&paths)?),
                };
                let reading = nvml.read();
                Ok::<_, TelemetryError>((nvml, reading))
            })
            .await
            .map_err(|e| TelemetryError::Other(format!("the NVML reading thread failed: {e}")))?;
            let (nvml, reading) = joined?;
            if self.gpus.is_empty() {
                self.gpus = nvml.gpus.clone();
            }
            self.nvml = Some(nvml);
            reading
        })
    }

    fn gpus(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_library_is_unavailable_with_the_reason() {
        let mut s = NvmlSampler::with_library_paths(vec![
            "/nonexistent/servebench-test/libnvidia-ml.so.1".into(),
        ]);
        let err = s.sample().await.unwrap_err();
        assert_eq!(
            err,
            TelemetryError::Unavailable(NOT_FOUND_REASON.into()),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine"
        );
        assert!(s.gpus().is_empty());
    }

    #[tokio::test]
    async fn a_library_without_nvml_symbols_is_unavailable_not_a_crash() {
        // libc exists on every Linux machine and has no NVML symbol in it.
        let mut s = NvmlSampler::with_library_paths(vec!["libc.so.6".into()]);
        match s.sample().await {
            Err(TelemetryError::Unavailable(reason)) => {
                assert!(reason.contains("nvmlInit_v2"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_default_sampler_reads_a_gpu_or_says_why_not() {
        // On this project's CI machines there is no driver: the reason must be the clear one.
        // On a GPU machine the same call returns readings for every device.
        match NvmlSampler::new().sample().await {
            Err(TelemetryError::Unavailable(reason)) => {
                assert!(reason.contains("libnvidia-ml.so.1") || reason.contains("NVML"))
            }
            Ok(samples) => assert!(!samples.is_empty()),
            Err(other) => panic!("NVML present but failed: {other}"),
        }
    }
}
