//! Catalogs of GPUs, models and cloud instances: data files in `catalogs/`, embedded at build time
//! and overridable from a user's TOML file.
//!
//! A user file uses the same shape as the built-in files (`[[gpu]]`, `[[model]]`, `[[instance]]`
//! tables, any subset in one file). An entry whose name (or alias) matches a built-in one replaces
//! it; a new name adds an entry. Unknown keys are rejected so a typo cannot silently fall back to a
//! default.

use serde::{Deserialize, Serialize};
use thiserror::Error;

const GPUS_TOML: &str = include_str!("../../catalogs/gpus.toml");
const MODELS_TOML: &str = include_str!("../../catalogs/models.toml");
const INSTANCES_TOML: &str = include_str!("../../catalogs/instances.toml");

/// One GPU: datasheet peaks plus how close real kernels get to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Total device memory as the driver reports it, GiB.
    pub memory_gib: f64,
    /// Peak memory bandwidth, GB/s (10^9 bytes).
    pub bandwidth_gbps: f64,
    /// Dense FP16/BF16 tensor throughput, TFLOP/s (no sparsity).
    pub dense_tflops: f64,
    /// Whether the GPU runs bf16 natively (T4 and V100 do not: bf16 models run in fp16 there).
    #[serde(default = "yes")]
    pub bf16: bool,
    /// Fraction of `dense_tflops` that large matrix products reach.
    pub matmul_efficiency: f64,
    /// Fraction of `bandwidth_gbps` that streaming kernels reach.
    pub bandwidth_efficiency: f64,
    /// Per-direction GPU-to-GPU bandwidth for tensor-parallel all-reduce, GB/s.
    pub interconnect_gbps: f64,
    /// How much of the smaller of a kernel group's compute and memory times fails to hide
    /// under the larger (the step's `overlap_loss` term). 1.0 (the default) was fitted to the
    /// A100 calibration points with per-operator (Vidur) efficiencies, which overstate a whole
    /// model; 0.0 where the efficiencies come from a measured whole-model step (Hopper).
    #[serde(default = "one")]
    pub overlap_loss: f64,
    /// The board's maximum power (TDP), W, for the simulator's modelled power; `None`: no
    /// modelled power or energy for this GPU.
    #[serde(default)]
    pub tdp_w: Option<f64>,
    /// Where `tdp_w` comes from (the datasheet line).
    #[serde(default)]
    pub tdp_source: Option<String>,
    pub source: String,
    pub date: String,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// How a model's layers are built; decides how the FLOPs of one token are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Two-matrix ReLU MLP, multi-head attention (OPT, GPT-2).
    Opt,
    /// Gated three-matrix MLP, grouped-query attention (Llama, Mistral, Qwen2).
    Llama,
}

/// One model: the architecture figures from its config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub architecture: Architecture,
    pub layers: u32,
    pub hidden_size: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub intermediate_size: u32,
    pub vocab_size: u32,
    /// Longest sequence (prompt + output) the model accepts, tokens.
    pub max_context: u32,
    /// Total parameter count (embeddings included).
    pub parameters: u64,
    #[serde(default)]
    pub tied_embeddings: bool,
    /// `float16`, `bfloat16` or `float32`: the weights' and KV cache's element type.
    pub dtype: String,
    pub source: String,
    pub date: String,
}

impl ModelSpec {
    /// Bytes per element of the weights and the KV cache.
    pub fn dtype_bytes(&self) -> u64 {
        match self.dtype.to_ascii_lowercase().as_str() {
            "float32" | "fp32" => 4,
            "float8" | "fp8" | "int8" => 1,
            _ => 2,
        }
    }

    /// Bytes of all weights.
    pub fn weight_bytes(&self) -> u64 {
        self.parameters * self.dtype_bytes()
    }

    /// KV cache bytes one token occupies across all layers: 2 (K and V) × layers × kv_heads ×
    /// head_dim × element size. Llama-3-8B in bf16: 128 KiB.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * self.dtype_bytes()
    }

    /// Parameters of the matrix products one token goes through in the transformer layers
    /// (attention projections and MLP), all layers; embeddings and the LM head excluded.
    pub fn layer_matmul_params(&self) -> u64 {
        let h = u64::from(self.hidden_size);
        let q = u64::from(self.heads) * u64::from(self.head_dim);
        let kv = u64::from(self.kv_heads) * u64::from(self.head_dim);
        let attn = h * q + 2 * h * kv + q * h;
        let inter = u64::from(self.intermediate_size);
        let mlp = match self.architecture {
            Architecture::Opt => 2 * h * inter,
            Architecture::Llama => 3 * h * inter,
        };
        u64::from(self.layers) * (attn + mlp)
    }

    /// Parameters of the LM head (vocabulary projection), computed only for sampled tokens.
    pub fn lm_head_params(&self) -> u64 {
        u64::from(self.hidden_size) * u64::from(self.vocab_size)
    }
}

/// One rentable machine and its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub provider: String,
    pub region: String,
    /// The GPU catalog name of the instance's accelerators.
    pub gpu: String,
    pub gpu_count: u32,
    #[serde(default)]
    pub vcpus: u32,
    #[serde(default)]
    pub memory_gib: u32,
    pub usd_per_hour: f64,
    pub source: String,
    pub date: String,
}

/// What a catalog file holds; every table is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default)]
    pub gpu: Vec<GpuSpec>,
    #[serde(default)]
    pub model: Vec<ModelSpec>,
    #[serde(default)]
    pub instance: Vec<InstanceSpec>,
}

/// Which table a name was looked up in (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    Gpu,
    Model,
    Instance,
}

impl std::fmt::Display for CatalogKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CatalogKind::Gpu => "gpu",
            CatalogKind::Model => "model",
            CatalogKind::Instance => "instance",
        })
    }
}

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("unknown {kind} {name:?}; known: {known}")]
    Unknown {
        kind: CatalogKind,
        name: String,
        known: String,
    },
    #[error("cannot parse catalog {origin}: {source}")]
    Parse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("catalog {origin}: {kind} {name:?}: {problem}")]
    Invalid {
        origin: String,
        kind: CatalogKind,
        name: String,
        problem: String,
    },
    #[error("cannot read catalog file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// GPUs, models and instances, with lookups by name or alias (case- and punctuation-insensitive).
#[derive(Debug, Clone)]
pub struct Catalog {
    gpus: Vec<GpuSpec>,
    models: Vec<ModelSpec>,
    instances: Vec<InstanceSpec>,
}

/// Lower-cased, with only letters, digits, `/` and `.` kept, so "NVIDIA A10G", "nvidia-a10g" and
/// "nvidia_a10g" are one key.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '.')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

trait Named {
    fn name(&self) -> &str;
    fn aliases(&self) -> &[String];
    fn matches(&self, key: &str) -> bool {
        normalize(self.name()) == key || self.aliases().iter().any(|a| normalize(a) == key)
    }
}

impl Named for GpuSpec {
    fn name(&self) -> &str {
        &self.name
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}
impl Named for ModelSpec {
    fn name(&self) -> &str {
        &self.name
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}
impl Named for InstanceSpec {
    fn name(&self) -> &str {
        &self.name
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}

fn find<'a, T: Named>(
    items: &'a [T],
    kind: CatalogKind,
    name: &str,
) -> Result<&'a T, CatalogError> {
    let key = normalize(name);
    let hit = items.iter().find(|i| i.matches(&key)).or_else(|| {
        // "NVIDIA H100 80GB HBM3" style names as nvidia-smi prints them.
        key.strip_prefix("nvidia")
            .and_then(|rest| items.iter().find(|i| i.matches(rest)))
    });
    hit.ok_or_else(|| CatalogError::Unknown {
        kind,
        name: name.to_string(),
        known: items
            .iter()
            .map(|i| i.name().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Replace entries with the same name (or an alias of the new entry's name) and add new ones.
fn merge<T: Named>(base: &mut Vec<T>, extra: Vec<T>) {
    for item in extra {
        let key = normalize(item.name());
        match base.iter().position(|b| b.matches(&key)) {
            Some(i) => base[i] = item,
            None => base.push(item),
        }
    }
}

fn parse_file(text: &str, origin: &str) -> Result<CatalogFile, CatalogError> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Parse {
        origin: origin.to_string(),
        source: Box::new(e),
    })?;
    validate(&file, origin)?;
    Ok(file)
}

fn validate(file: &CatalogFile, origin: &str) -> Result<(), CatalogError> {
    let invalid = |kind, name: &str, problem: &str| CatalogError::Invalid {
        origin: origin.to_string(),
        kind,
        name: name.to_string(),
        problem: problem.to_string(),
    };
    for g in &file.gpu {
        let positive = [
            g.memory_gib,
            g.bandwidth_gbps,
            g.dense_tflops,
            g.interconnect_gbps,
        ];
        if positive.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(invalid(
                CatalogKind::Gpu,
                &g.name,
                "memory, bandwidth, FLOP/s and interconnect must be positive numbers",
            ));
        }
        for e in [g.matmul_efficiency, g.bandwidth_efficiency] {
            if !(e > 0.0 && e <= 1.0) {
                return Err(invalid(
                    CatalogKind::Gpu,
                    &g.name,
                    "efficiencies must lie in (0, 1]",
                ));
            }
        }
        if !(g.overlap_loss.is_finite() && (0.0..=1.0).contains(&g.overlap_loss)) {
            return Err(invalid(
                CatalogKind::Gpu,
                &g.name,
                "overlap_loss must lie in [0, 1] (0: compute and memory overlap fully)",
            ));
        }
    }
    for m in &file.model {
        let dims = [
            m.layers,
            m.hidden_size,
            m.heads,
            m.kv_heads,
            m.head_dim,
            m.intermediate_size,
            m.vocab_size,
            m.max_context,
        ];
        if dims.contains(&0) || m.parameters == 0 {
            return Err(invalid(
                CatalogKind::Model,
                &m.name,
                "every dimension and the parameter count must be positive",
            ));
        }
        if m.heads % m.kv_heads != 0 {
            return Err(invalid(
                CatalogKind::Model,
                &m.name,
                "heads must be a multiple of kv_heads",
            ));
        }
    }
    for i in &file.instance {
        if !(i.usd_per_hour.is_finite() && i.usd_per_hour >= 0.0) || i.gpu_count == 0 {
            return Err(invalid(
                CatalogKind::Instance,
                &i.name,
                "needs a non-negative price and at least one GPU",
            ));
        }
    }
    Ok(())
}

impl Catalog {
    /// The catalogs shipped with servebench (`catalogs/*.toml`).
    pub fn builtin() -> Catalog {
        // The embedded files are checked by this module's tests; a broken one is a build defect,
        // and an empty table then is the least surprising fallback.
        let part = |text, origin| parse_file(text, origin).unwrap_or_default();
        let g = part(GPUS_TOML, "catalogs/gpus.toml");
        let m = part(MODELS_TOML, "catalogs/models.toml");
        let i = part(INSTANCES_TOML, "catalogs/instances.toml");
        Catalog {
            gpus: g.gpu,
            models: m.model,
            instances: i.instance,
        }
    }

    /// Merge a user's catalog text (same shape as the built-in files) into this catalog.
    pub fn merge_toml(&mut self, text: &str, origin: &str) -> Result<(), CatalogError> {
        let file = parse_file(text, origin)?;
        merge(&mut self.gpus, file.gpu);
        merge(&mut self.models, file.model);
        merge(&mut self.instances, file.instance);
        Ok(())
    }

    /// Merge a user's catalog file into this catalog.
    pub fn merge_file(&mut self, path: &std::path::Path) -> Result<(), CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.merge_toml(&text, &path.display().to_string())
    }

    pub fn gpu(&self, name: &str) -> Result<&GpuSpec, CatalogError> {
        find(&self.gpus, CatalogKind::Gpu, name)
    }

    pub fn model(&self, name: &str) -> Result<&ModelSpec, CatalogError> {
        find(&self.models, CatalogKind::Model, name)
    }

    pub fn instance(&self, name: &str) -> Result<&InstanceSpec, CatalogError> {
        find(&self.instances, CatalogKind::Instance, name)
    }

    pub fn gpus(&self) -> &[GpuSpec] {
        &self.gpus
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    pub fn instances(&self) -> &[InstanceSpec] {
        &self.instances
    }

    /// Instances carrying the given GPU (by catalog name), cheapest first.
    pub fn instances_with_gpu(&self, gpu: &str) -> Vec<&InstanceSpec> {
        let Ok(spec) = self.gpu(gpu) else {
            return Vec::new();
        };
        let mut out: Vec<&InstanceSpec> = self
            .instances
            .iter()
            .filter(|i| {
                self.gpu(&i.gpu)
                    .map(|g| g.name == spec.name)
                    .unwrap_or(false)
            })
            .collect();
        out.sort_by(|a, b| a.usd_per_hour.total_cmp(&b.usd_per_hour));
        out
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_parse_and_are_complete() {
        for (text, origin) in [
            (GPUS_TOML, "gpus"),
            (MODELS_TOML, "models"),
            (INSTANCES_TOML, "instances"),
        ] {
            parse_file(text, origin).unwrap();
        }
        let c = Catalog::builtin();
        assert_eq!(c.gpus().len(), 10);
        assert!(c.models().len() >= 9);
        assert_eq!(c.instances().len(), 8);
        for i in c.instances() {
            assert!(
                c.gpu(&i.gpu).is_ok(),
                "instance {} names unknown gpu",
                i.name
            );
        }
        for g in c.gpus() {
            assert!(!g.source.is_empty() && !g.date.is_empty());
        }
        for m in c.models() {
            assert!(m.source.contains("config.json") && !m.date.is_empty());
        }
    }

    #[test]
    fn lookups_ignore_case_and_punctuation_and_accept_aliases() {
        let c = Catalog::builtin();
        for n in ["a10g", "A10G", "NVIDIA A10G", "nvidia-a10g"] {
            assert_eq!(c.gpu(n).unwrap().name, "A10G");
        }
        assert_eq!(c.gpu("NVIDIA H100 80GB HBM3").unwrap().name, "H100");
        assert_eq!(
            c.model("meta-llama/Llama-3.1-8B-Instruct").unwrap().name,
            "meta-llama/Llama-3.1-8B"
        );
        assert_eq!(c.model("OPT-125M").unwrap().name, "facebook/opt-125m");
        assert_eq!(c.instance("G5.XLARGE").unwrap().usd_per_hour, 1.006);
    }

    #[test]
    fn a_missing_name_lists_the_known_ones() {
        let err = Catalog::builtin().gpu("b200").unwrap_err().to_string();
        assert!(err.contains("unknown gpu \"b200\""), "{err}");
        assert!(err.contains("A10G") && err.contains("H100"), "{err}");
    }

    #[test]
    fn kv_bytes_per_token_match_the_published_figures() {
        let c = Catalog::builtin();
        let kib = |m: &str| c.model(m).unwrap().kv_bytes_per_token() / 1024;
        assert_eq!(kib("meta-llama/Llama-3.1-8B"), 128);
        assert_eq!(kib("meta-llama/Llama-3.1-70B"), 320);
        assert_eq!(kib("huggyllama/llama-7b"), 512);
    }

    #[test]
    fn matmul_params_are_close_to_the_parameter_count() {
        // Non-embedding parameters plus the LM head should land near the published total.
        let c = Catalog::builtin();
        for m in c.models() {
            let embed = m.lm_head_params();
            let counted = m.layer_matmul_params() + embed * if m.tied_embeddings { 1 } else { 2 };
            let ratio = counted as f64 / m.parameters as f64;
            assert!((0.95..1.05).contains(&ratio), "{}: {ratio}", m.name);
        }
    }

    #[test]
    fn user_entries_replace_and_add() {
        let mut c = Catalog::builtin();
        let text = r#"
[[instance]]
name = "g5.xlarge"
provider = "aws"
region = "eu-west-1"
gpu = "a10g"
gpu_count = 1
usd_per_hour = 0.5
source = "my contract"
date = "2026-12-01"

[[gpu]]
name = "B200"
memory_gib = 180.0
bandwidth_gbps = 8000.0
dense_tflops = 2250.0
matmul_efficiency = 0.8
bandwidth_efficiency = 0.8
interconnect_gbps = 900.0
source = "datasheet"
date = "2026-12-01"
"#;
        c.merge_toml(text, "mine.toml").unwrap();
        assert_eq!(c.instance("g5.xlarge").unwrap().usd_per_hour, 0.5);
        assert_eq!(c.instances().len(), 8);
        assert_eq!(c.gpu("b200").unwrap().memory_gib, 180.0);
        assert_eq!(c.instances_with_gpu("A10G")[0].name, "g5.xlarge");
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_key_named() {
        let mut c = Catalog::builtin();
        let text = "[[gpu]]\nname = \"X\"\nmemory_gb = 1.0\n";
        let err = c.merge_toml(text, "mine.toml").unwrap_err().to_string();
        assert!(
            err.contains("mine.toml") && err.contains("memory_gb"),
            "{err}"
        );
        let err = c
            .merge_toml("[[gpus]]\n", "mine.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpus"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let mut c = Catalog::builtin();
        let text = r#"
[[gpu]]
name = "Bad"
memory_gib = 10.0
bandwidth_gbps = 100.0
dense_tflops = 10.0
matmul_efficiency = 1.5
bandwidth_efficiency = 0.8
interconnect_gbps = 10.0
source = "s"
date = "d"
"#;
        let err = c.merge_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("efficiencies"), "{err}");
    }
    #[test]
    fn overlap_loss_defaults_to_the_fitted_one_and_is_bounded() {
        let gpu = |extra: &str| {
            format!(
                "[[gpu]]\nname = \"Mine\"\nmemory_gib = 10.0\nbandwidth_gbps = 100.0\n\
                 dense_tflops = 10.0\nmatmul_efficiency = 0.5\nbandwidth_efficiency = 0.8\n\
                 interconnect_gbps = 10.0\nsource = \"s\"\ndate = \"d\"\n{extra}"
            )
        };
        let mut c = Catalog::builtin();
        c.merge_toml(&gpu(""), "mine.toml").unwrap();
        assert_eq!(c.gpu("mine").unwrap().overlap_loss, 1.0);
        c.merge_toml(&gpu("overlap_loss = 0.0\n"), "mine.toml")
            .unwrap();
        assert_eq!(c.gpu("mine").unwrap().overlap_loss, 0.0);
        let err = c
            .merge_toml(&gpu("overlap_loss = 2.0\n"), "mine.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlap_loss"), "{err}");
        // The measured Hopper entries carry no overlap loss; the A100 keeps the fitted one.
        let b = Catalog::builtin();
        assert_eq!(b.gpu("h200").unwrap().overlap_loss, 0.0);
        assert_eq!(b.gpu("a100-80gb").unwrap().overlap_loss, 1.0);
    }
}
