//! Checking what the user asked `advise` for, before any ranking: every name is known, every
//! number is one a ranking can use. Errors name the input and list the valid choices; the
//! binary turns them into exit code 2.

use super::catalog::{self, ServerSpec};
use super::llm::{self, ModelSpec, Quant};

/// An `advise` input that cannot be used, naming it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("--model {given:?} is not a known model; known: {known}")]
    UnknownModel { given: String, known: String },
    #[error("--quant {given:?} is not a llama.cpp quantisation passthru knows; known: {known}")]
    UnknownQuant { given: String, known: String },
    #[error("--server {given:?} is not a known box; known: {known}")]
    UnknownServer { given: String, known: String },
    #[error("--gpu {given:?} names no card in the catalog (give a key such as rtx-3090 or a name such as \"GeForce RTX 3090\"; `passthru advise --use llm --json` lists them)")]
    UnknownGpu { given: String },
    #[error("--context 0: a model needs at least one token of context")]
    ZeroContext,
    #[error("{flag} {value}: must be a finite number, 0 or more")]
    BadNumber { flag: &'static str, value: f64 },
}

/// The model the request resolved to, with a line saying how when it is not literally what
/// was typed (`7b` -> `qwen2.5-7b`), and the context clamped to what the model was trained for.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    pub model: ModelSpec,
    pub quant: Quant,
    pub context: u32,
    pub warnings: Vec<String>,
}

/// Checks `--model`, `--quant` and `--context` (LLM use only).
pub fn check_model(
    model: Option<&str>,
    quant: &str,
    context: u32,
) -> Result<ResolvedModel, RequestError> {
    let given = model.unwrap_or("8b");
    let m = llm::model(given).ok_or_else(|| RequestError::UnknownModel {
        given: given.to_string(),
        known: format!(
            "{} (or a size: {})",
            llm::model_names().join(", "),
            llm::plain_sizes().join(", ")
        ),
    })?;
    let q = llm::quant(quant).ok_or_else(|| RequestError::UnknownQuant {
        given: quant.to_string(),
        known: llm::quants()
            .iter()
            .map(|q| q.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    if context == 0 {
        return Err(RequestError::ZeroContext);
    }
    let mut warnings = Vec::new();
    if model.is_none() {
        warnings.push(format!(
            "No --model given: the estimates are for {} ({given}).",
            m.name
        ));
    } else if !m.name.eq_ignore_ascii_case(given.trim()) {
        warnings.push(format!(
            "--model {given} means {} ({:.2}B parameters{}).",
            m.name,
            m.params_b,
            if m.active_params_b < m.params_b {
                format!(", {:.1}B active per token", m.active_params_b)
            } else {
                String::new()
            }
        ));
    }
    let context = if context > m.max_context {
        warnings.push(format!(
            "--context {context} is above {}'s trained context of {}: using {}.",
            m.name, m.max_context, m.max_context
        ));
        m.max_context
    } else {
        context
    };
    Ok(ResolvedModel {
        model: m,
        quant: q,
        context,
        warnings,
    })
}

/// Checks `--server`.
pub fn check_server(key: Option<&str>) -> Result<Option<&'static ServerSpec>, RequestError> {
    let Some(k) = key else { return Ok(None) };
    catalog::servers()
        .iter()
        .find(|s| s.key == k)
        .map(Some)
        .ok_or_else(|| RequestError::UnknownServer {
            given: k.to_string(),
            known: catalog::servers()
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks a money or energy figure (`--budget`, `--price-kwh`): NaN, infinities and negative
/// numbers would print as nonsense costs.
pub fn check_amount(flag: &'static str, value: f64) -> Result<f64, RequestError> {
    if (0.0..1e9).contains(&value) {
        Ok(value)
    } else {
        Err(RequestError::BadNumber { flag, value })
    }
}

/// Keys of the catalog cards `--gpu` names (by key or by name, case-insensitively).
pub fn check_gpus(wanted: &[String]) -> Result<Vec<String>, RequestError> {
    wanted
        .iter()
        .map(|w| {
            let w = w.trim();
            catalog::gpus()
                .iter()
                .find(|g| g.key.eq_ignore_ascii_case(w) || g.name.eq_ignore_ascii_case(w))
                .map(|g| g.key.clone())
                .ok_or_else(|| RequestError::UnknownGpu {
                    given: w.to_string(),
                })
        })
        .collect()
}
