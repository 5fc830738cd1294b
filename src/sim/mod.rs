//! The embedded serving-engine simulator.
//!
//! - [`catalog`]: GPUs, models and cloud instances (data files in `catalogs/`, overridable).
//!
//! See `docs/simulator.md` for what is modelled, what is not, and the calibration.

pub mod catalog;

pub use catalog::{Catalog, CatalogError, GpuSpec, InstanceSpec, ModelSpec};
