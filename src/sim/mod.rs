//! The embedded serving-engine simulator.
//!
//! - [`catalog`]: GPUs, models and cloud instances (data files in `catalogs/`, overridable).
//! - [`roofline`]: how long one engine step takes on a GPU.
//! - [`kv`]: paged KV blocks with hash-based prefix caching (vLLM) and the radix cache (SGLang).
//! - [`reference`]: the measured H200 floor of a Llama-3.1-8B step, which the model may never beat.
//! - [`profile`]: the engines' scheduling and memory mechanisms and their defaults.
//! - [`engine`]: the iteration-level discrete-event engine model.
//! - [`mod@predict`]: run a workload through the model in virtual time, producing client records;
//!   requests come from an [`predict::Arrivals`] source (a fixed list, or one whose arrivals
//!   depend on finishes).
//! - [`conversation`]: multi-turn conversations as such a source (turn k+1 due at turn k's
//!   finish plus the think time).
//! - [`sharegpt`]: a synthetic ShareGPT-like length distribution.
//! - [`calibration`]: the published results the free constants were fitted to.
//! - [`serve`]: the engine model behind the OpenAI-compatible server, in real time.
//! - [`power`]: modelled GPU power and energy from the busy fraction and the catalog's TDP.
//!
//! See `docs/simulator.md` for what is modelled, what is not, and the calibration.

pub mod breakdown;
pub mod calibration;
pub mod catalog;
pub mod conversation;
pub mod engine;
pub mod kv;
pub mod power;
pub mod predict;
pub mod profile;
pub mod reference;
pub mod roofline;
pub mod serve;
pub mod sharegpt;

pub use catalog::{Catalog, CatalogError, GpuSpec, InstanceSpec, ModelSpec};
pub use engine::{Engine, EngineFacts, EngineGauges, Rejection, SimError, SimRequest, StepReport};
pub use kv::PrefixSegment;
pub use predict::{
    predict, predict_arrivals, predict_with, Arrivals, Offer, PredictOptions, Prediction, SimLoad,
};
pub use profile::{BatchMode, EngineKind, EngineProfile, OptionValue, SchedulePolicy};
pub use serve::SimBackend;
