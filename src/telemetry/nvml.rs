//! [`NvmlSampler`]: GPU utilization, memory, power, energy, clocks, temperature and clock-event
//! reasons from NVIDIA's management library, loaded at run time.
//!
//! servebench is never linked against NVML: `libnvidia-ml.so.1` ships with the driver, not with
//! CUDA, so linking would make the binary unusable on every machine without an NVIDIA driver.
//! It is opened with `dlopen` on first use; where it is missing the sampler is *unavailable*
//! (a reason, recorded once), never a failed run.
//!
//! Signatures and constants are those of NVIDIA's `nvml.h` (NVML API version 13, as vendored in
//! NVIDIA/go-nvml `gen/nvml/nvml.h`). Utilization and memory are required; every other counter
//! is optional per GPU: a function the library does not export (an older driver) or a device
//! that answers `NVML_ERROR_NOT_SUPPORTED` makes that counter *unavailable* on that GPU, with
//! the reason, recorded once ([`Sampler::unavailable_counters`]) and never asked again: a
//! missing counter is never a zero.

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
/// "Local version of NVML doesn't implement this function" (nvml.h `nvmlReturn_t`).
const NVML_ERROR_FUNCTION_NOT_FOUND: NvmlReturn = 13;
/// `nvmlClockType_t`: `NVML_CLOCK_SM = 1`, `NVML_CLOCK_MEM = 2`.
const NVML_CLOCK_SM: c_uint = 1;
const NVML_CLOCK_MEM: c_uint = 2;
/// `nvmlTemperatureSensors_t`: `NVML_TEMPERATURE_GPU = 0` (the die).
const NVML_TEMPERATURE_GPU: c_uint = 0;

/// The clock-event (formerly "throttle") reason bits, nvml.h `nvmlClocksEventReason*` /
/// `nvmlClocksThrottleReason*` (same values), with the names servebench reports them under.
pub const CLOCK_EVENT_REASONS: [(u64, &str); 9] = [
    (0x0000_0001, "gpu_idle"),
    (0x0000_0002, "applications_clocks_setting"),
    (0x0000_0004, "sw_power_cap"),
    (0x0000_0008, "hw_slowdown"),
    (0x0000_0010, "sync_boost"),
    (0x0000_0020, "sw_thermal_slowdown"),
    (0x0000_0040, "hw_thermal_slowdown"),
    (0x0000_0080, "hw_power_brake_slowdown"),
    (0x0000_0100, "display_clock_setting"),
];

/// The name under which bits outside [`CLOCK_EVENT_REASONS`] (a newer driver's) are counted.
pub const OTHER_CLOCK_EVENT_REASON: &str = "other";

/// The named reasons set in `mask`, in bit order; any bit servebench does not know adds
/// [`OTHER_CLOCK_EVENT_REASON`] once.
pub fn decode_clock_event_reasons(mask: u64) -> Vec<&'static str> {
    let known = CLOCK_EVENT_REASONS
        .iter()
        .fold(0u64, |m, &(bit, _)| m | bit);
    let mut names: Vec<&'static str> = CLOCK_EVENT_REASONS
        .iter()
        .filter(|&&(bit, _)| mask & bit != 0)
        .map(|&(_, name)| name)
        .collect();
    if mask & !known != 0 {
        names.push(OTHER_CLOCK_EVENT_REASON);
    }
    names
}
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

/// `nvmlTemperature_v1_t`, for `nvmlDeviceGetTemperatureV` (the non-deprecated call in NVML 13).
#[repr(C)]
struct TemperatureV1 {
    version: c_uint,
    sensor_type: c_uint,
    temperature: c_int,
}

impl TemperatureV1 {
    fn gpu() -> Self {
        TemperatureV1 {
            // `NVML_STRUCT_VERSION(Temperature, 1)`.
            version: (std::mem::size_of::<TemperatureV1>() as c_uint) | (1 << 24),
            sensor_type: NVML_TEMPERATURE_GPU,
            temperature: 0,
        }
    }
}

type ReadU32 = unsafe extern "C" fn(Device, *mut c_uint) -> NvmlReturn;
type ReadU64 = unsafe extern "C" fn(Device, *mut c_ulonglong) -> NvmlReturn;
type ReadTyped = unsafe extern "C" fn(Device, c_uint, *mut c_uint) -> NvmlReturn;
type ReadTemperatureV = unsafe extern "C" fn(Device, *mut TemperatureV1) -> NvmlReturn;

/// A per-GPU reading beyond utilization and memory, each optional on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Power,
    Energy,
    SmClock,
    MemClock,
    Temperature,
    ClockEventReasons,
}

impl Counter {
    const ALL: [Counter; 6] = [
        Counter::Power,
        Counter::Energy,
        Counter::SmClock,
        Counter::MemClock,
        Counter::Temperature,
        Counter::ClockEventReasons,
    ];

    fn series(self) -> Series {
        match self {
            Counter::Power => Series::GpuPowerW,
            Counter::Energy => Series::GpuEnergyJ,
            Counter::SmClock => Series::GpuSmClockMhz,
            Counter::MemClock => Series::GpuMemClockMhz,
            Counter::Temperature => Series::GpuTempC,
            Counter::ClockEventReasons => Series::GpuClockEventReasons,
        }
    }
}

/// The optional entry points; `None` where the library does not export them.
struct OptionalApi {
    /// `nvmlDeviceGetPowerUsage(device, unsigned int *power)`: mW.
    power: Option<ReadU32>,
    /// `nvmlDeviceGetTotalEnergyConsumption(device, unsigned long long *energy)`: mJ since the
    /// driver was loaded (Volta and newer).
    energy: Option<ReadU64>,
    /// `nvmlDeviceGetClockInfo(device, nvmlClockType_t type, unsigned int *clock)`: MHz.
    clock: Option<ReadTyped>,
    /// `nvmlDeviceGetTemperature(device, nvmlTemperatureSensors_t, unsigned int *temp)`: °C.
    /// Deprecated in NVML 13 but exported; `temperature_v` is used where it is gone.
    temperature: Option<ReadTyped>,
    /// `nvmlDeviceGetTemperatureV(device, nvmlTemperature_t *)`.
    temperature_v: Option<ReadTemperatureV>,
    /// `nvmlDeviceGetCurrentClocksEventReasons` (driver ≥ 535), else the older
    /// `nvmlDeviceGetCurrentClocksThrottleReasons`, with the name of the one found.
    clock_event_reasons: Option<(ReadU64, &'static str)>,
}

impl OptionalApi {
    /// # Safety
    /// Each name is looked up with its nvml.h signature.
    unsafe fn resolve(lib: &Library) -> Self {
        OptionalApi {
            power: symbol(lib, b"nvmlDeviceGetPowerUsage\0").ok(),
            energy: symbol(lib, b"nvmlDeviceGetTotalEnergyConsumption\0").ok(),
            clock: symbol(lib, b"nvmlDeviceGetClockInfo\0").ok(),
            temperature: symbol(lib, b"nvmlDeviceGetTemperature\0").ok(),
            temperature_v: symbol(lib, b"nvmlDeviceGetTemperatureV\0").ok(),
            clock_event_reasons: symbol(lib, b"nvmlDeviceGetCurrentClocksEventReasons\0")
                .ok()
                .map(|f| (f, "nvmlDeviceGetCurrentClocksEventReasons"))
                .or_else(|| {
                    symbol(lib, b"nvmlDeviceGetCurrentClocksThrottleReasons\0")
                        .ok()
                        .map(|f| (f, "nvmlDeviceGetCurrentClocksThrottleReasons"))
                }),
        }
    }

    /// Why `counter` cannot be read with this library at all, or `None` when it can.
    fn missing(&self, counter: Counter) -> Option<String> {
        let absent = match counter {
            Counter::Power => self.power.is_none().then_some("nvmlDeviceGetPowerUsage"),
            Counter::Energy => self
                .energy
                .is_none()
                .then_some("nvmlDeviceGetTotalEnergyConsumption"),
            Counter::SmClock | Counter::MemClock => {
                self.clock.is_none().then_some("nvmlDeviceGetClockInfo")
            }
            Counter::Temperature => (self.temperature.is_none() && self.temperature_v.is_none())
                .then_some("nvmlDeviceGetTemperature"),
            Counter::ClockEventReasons => self
                .clock_event_reasons
                .is_none()
                .then_some(
                    "nvmlDeviceGetCurrentClocksEventReasons or nvmlDeviceGetCurrentClocksThrottleReasons",
                ),
        }?;
        Some(format!(
            "the NVML library has no {absent} (an older driver); upgrade the NVIDIA driver to read it"
        ))
    }

    /// One reading of `counter` on `dev`, in the series' unit: `(NVML's return code, the call's
    /// name, the value when the code is success)`. Only called when [`Self::missing`] is `None`.
    fn read(&self, dev: Device, counter: Counter) -> (NvmlReturn, &'static str, f64) {
        const ABSENT: (NvmlReturn, &str, f64) = (NVML_ERROR_FUNCTION_NOT_FOUND, "nvml", 0.0);
        // SAFETY (every call below): a valid handle and a valid out-pointer of the type nvml.h
        // gives the call.
        unsafe {
            match counter {
                Counter::Power => self.power.map_or(ABSENT, |f| {
                    let mut mw: c_uint = 0;
                    let rc = f(dev, &mut mw);
                    (rc, "nvmlDeviceGetPowerUsage", f64::from(mw) / 1000.0)
                }),
                Counter::Energy => self.energy.map_or(ABSENT, |f| {
                    let mut mj: c_ulonglong = 0;
                    let rc = f(dev, &mut mj);
                    (
                        rc,
                        "nvmlDeviceGetTotalEnergyConsumption",
                        mj as f64 / 1000.0,
                    )
                }),
                Counter::SmClock | Counter::MemClock => self.clock.map_or(ABSENT, |f| {
                    let which = if counter == Counter::SmClock {
                        NVML_CLOCK_SM
                    } else {
                        NVML_CLOCK_MEM
                    };
                    let mut mhz: c_uint = 0;
                    let rc = f(dev, which, &mut mhz);
                    (rc, "nvmlDeviceGetClockInfo", f64::from(mhz))
                }),
                Counter::Temperature => match (self.temperature, self.temperature_v) {
                    (Some(f), _) => {
                        let mut c: c_uint = 0;
                        let rc = f(dev, NVML_TEMPERATURE_GPU, &mut c);
                        (rc, "nvmlDeviceGetTemperature", f64::from(c))
                    }
                    (None, Some(f)) => {
                        let mut t = TemperatureV1::gpu();
                        let rc = f(dev, &mut t);
                        (rc, "nvmlDeviceGetTemperatureV", f64::from(t.temperature))
                    }
                    (None, None) => ABSENT,
                },
                Counter::ClockEventReasons => {
                    self.clock_event_reasons.map_or(ABSENT, |(f, name)| {
                        let mut mask: c_ulonglong = 0;
                        let rc = f(dev, &mut mask);
                        (rc, name, mask as f64)
                    })
                }
            }
        }
    }
}

/// A counter that one GPU cannot give, and why (recorded once per counter and GPU).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CounterUnavailable {
    /// The device index.
    pub gpu: String,
    /// The normalized series it would have fed.
    pub series: Series,
    pub reason: String,
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
    optional: OptionalApi,
}

/// An initialized NVML with its devices. Shut down on drop.
struct Nvml {
    api: Api,
    devices: Vec<(u32, Device)>,
    gpus: Vec<GpuInfo>,
    /// Counters given up on, per GPU, with the reason: never asked again.
    unavailable: Vec<CounterUnavailable>,
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
                optional: OptionalApi::resolve(&lib),
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
            unavailable: Vec::new(),
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
            // A function the library lacks is missing for every GPU: say so once per GPU now.
            for counter in Counter::ALL {
                if let Some(reason) = self.api.optional.missing(counter) {
                    self.give_up(index, counter, reason);
                }
            }
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

    fn give_up(&mut self, index: u32, counter: Counter, reason: String) {
        let gpu = index.to_string();
        let series = counter.series();
        if !self
            .unavailable
            .iter()
            .any(|u| u.gpu == gpu && u.series == series)
        {
            self.unavailable.push(CounterUnavailable {
                gpu,
                series,
                reason,
            });
        }
    }

    fn given_up(&self, index: u32, counter: Counter) -> bool {
        let series = counter.series();
        self.unavailable
            .iter()
            .any(|u| u.series == series && u.gpu.parse() == Ok(index))
    }

    /// One reading of every optional counter of every device. NOT_SUPPORTED (and
    /// FUNCTION_NOT_FOUND) retire the counter on that GPU with the reason; any other failure is
    /// returned as the first error, and the counter is asked again next time.
    fn read_optional(&mut self, out: &mut Vec<Sample>) -> Option<TelemetryError> {
        let mut first_error = None;
        let devices = self.devices.clone();
        for (index, dev) in devices {
            let labels = Labels::from([(LABEL_GPU.to_string(), index.to_string())]);
            for counter in Counter::ALL {
                if self.given_up(index, counter) {
                    continue;
                }
                match self.api.optional.read(dev, counter) {
                    (NVML_SUCCESS, _, value) => out.push(Sample::normalized(
                        counter.series(),
                        TelemetrySource::Nvml,
                        labels.clone(),
                        value,
                    )),
                    (rc @ (NVML_ERROR_NOT_SUPPORTED | NVML_ERROR_FUNCTION_NOT_FOUND), call, _) => {
                        let reason = format!(
                            "{call} answers {} (code {rc}): this GPU or driver does not report it",
                            error_text(&self.api, rc)
                        );
                        self.give_up(index, counter, reason);
                    }
                    (rc, call, _) => {
                        if first_error.is_none() {
                            first_error = self.check(call, rc).err();
                        }
                    }
                }
            }
        }
        first_error
    }

    /// One reading of every device. Unsupported readings (utilization on a MIG instance) are
    /// left out; an error is returned only when no reading at all succeeded.
    fn read(&mut self) -> Result<Vec<Sample>, TelemetryError> {
        let mut out = Vec::with_capacity(self.devices.len() * 10);
        let optional_error = self.read_optional(&mut out);
        let mut first_error = optional_error.map(Err);
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

/// GPU utilization, memory, power, energy, clocks, temperature and clock-event reasons of
/// every NVIDIA device on this machine, through NVML.
///
/// The library is loaded on the first `sample` (on a blocking thread: `nvmlInit` can take a
/// while) and kept until the sampler is dropped.
pub struct NvmlSampler {
    paths: Vec<String>,
    nvml: Option<Box<Nvml>>,
    gpus: Vec<GpuInfo>,
    unavailable: Vec<CounterUnavailable>,
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
            unavailable: Vec::new(),
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
                let mut nvml = match held {
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
            if self.unavailable.len() != nvml.unavailable.len() {
                self.unavailable = nvml.unavailable.clone();
            }
            self.nvml = Some(nvml);
            reading
        })
    }

    fn gpus(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }

    fn unavailable_counters(&self) -> Vec<CounterUnavailable> {
        self.unavailable.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_event_reasons_decode_by_name_and_unknown_bits_are_other() {
        assert!(decode_clock_event_reasons(0).is_empty());
        assert_eq!(decode_clock_event_reasons(0x1), vec!["gpu_idle"]);
        assert_eq!(
            decode_clock_event_reasons(0x4 | 0x40 | 0x100),
            vec![
                "sw_power_cap",
                "hw_thermal_slowdown",
                "display_clock_setting"
            ]
        );
        assert_eq!(
            decode_clock_event_reasons(0x80 | 0x1000),
            vec!["hw_power_brake_slowdown", "other"]
        );
        // Every nvml.h bit 0x1..=0x100 has a name, each its own.
        let all = CLOCK_EVENT_REASONS.iter().fold(0, |m, &(b, _)| m | b);
        assert_eq!(all, 0x1ff);
        assert_eq!(decode_clock_event_reasons(all).len(), 9);
    }

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
