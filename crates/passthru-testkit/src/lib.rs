//! Synthetic host roots for passthru's tests.
//!
//! A *description* (TOML, see below) declares what a Linux host looks like: kernel,
//! CPU, IOMMU, modules, PCI functions, DRM cards and any odd or broken files.
//! [`build_host`] writes it as a root tree (`sys/`, `proc/`, `etc/`, `lib/`, `dev/`)
//! laid out as the kernel lays out sysfs, so a reader pointed at the root cannot
//! tell it from a capture. Tests never touch the real `/sys` and never need root.
//! Descriptions live in `tests/fixtures/synthetic/NAME.toml` ([`synthetic_dir`]).
//!
//! This crate only writes below the root it is given.
//!
//! # Description format
//!
//! Every table rejects unknown keys. Integers may be hex (`0x10de`).
//!
//! ```toml
//! remove = ["sys/bus/pci/devices/0000:00:14.0/class"]  # deleted after generation
//!
//! [host]
//! kernel_release = "6.1.0-18-amd64"   # proc/sys/kernel/osrelease, lib/modules/<rel>/
//! proc_version = "Linux version …"    # optional; derived from the release
//! cmdline = "BOOT_IMAGE=… ro quiet"    # proc/cmdline
//! firmware = "efi"                     # "efi" -> sys/firmware/efi/, or "bios"
//! os_release = """ID=debian …"""        # etc/os-release (omit = no file)
//! nvidia_version = "550.54.14"         # proc/driver/nvidia/version (two-line format)
//! char_devices = ["195 nvidia-frontend", "508 nvidia-uvm"]   # added to proc/devices
//! modules_builtin = ["kernel/drivers/vfio/vfio.ko"]          # modules.builtin
//! params = { "vfio_iommu_type1.allow_unsafe_interrupts" = "N" }  # sys/module/M/parameters/P
//!
//! [cpu]                                # proc/cpuinfo, `processors` blocks
//! vendor_id = "AuthenticAMD"
//! model_name = "AMD Ryzen 9 5900X 12-Core Processor"
//! flags = "fpu … svm …"
//! processors = 4                        # sockets = 1, family/model/stepping optional
//!
//! [iommu]
//! vendor = "amd"                        # intel | amd | none (default none)
//! firmware_table = true                 # ACPI DMAR / IVRS file (default: vendor != none)
//! units = 1                             # sys/class/iommu/dmarN|ivhdN (default 1, 0 if none)
//! unit_device = "0000:00:00.2"          # AMD: ivhdN sits below this function
//! interrupt_remapping = true            # IR-… chips in proc/interrupts, ecap bit 3
//! group_type = "DMA-FQ"                 # every group's `type`
//! group_types = { "3" = "identity" }    # per-group overrides
//!
//! [[module]]                            # one proc/modules line each, in order
//! name = "nvidia"
//! size = 56717312
//! refcount = 2
//! deps = ["nvidia_modeset"]             # "-" when empty
//! state = "Live"                        # default
//! taint = "POE"                         # optional "(POE)"
//!
//! [[device]]
//! address = "0000:0a:00.0"              # DDDD:BB:SS.F, any domain
//! parent = "0000:00:03.1"               # bridge above; omit = root bus
//! class = 0x030000
//! vendor = 0x10de
//! device = 0x2206
//! subsystem_vendor = 0x10de             # default 0
//! subsystem_device = 0x1467
//! revision = 0xa1
//! driver = "nvidia"                     # omit = unbound
//! module = "nvidia"                     # default: driver with - -> _; "" = no link
//! iommu_group = "12"                    # omit = no iommu_group link
//! boot_vga = true                       # file only for class 0x0300xx
//! reset_method = "flr bus"              # omit = no reset_method / reset
//! power_state = "D0"                    # runtime_status = "active", control = "on",
//! d3cold_allowed = true                 # numa_node = -1, driver_override = "(null)"
//! link_speed = "16.0 GT/s PCIe"         # current_/max_link_speed; omit = no file
//! link_width = "16"
//! sriov_totalvfs = 64                   # PF; sriov_numvfs defaults to the VFs described
//! physfn = "0000:03:00.0"               # VF: physfn link, virtfnN on the PF
//! irq = 35                              # default: allocated from 24 for bound devices
//! secondary_bus = 0x05                  # bridge with no described children
//! drm = { card = 0, render = true, connectors = [{ name = "HDMI-A-1", status = "connected" }] }
//!
//! [generate]                            # add a dual-socket Xeon server (see generate.rs)
//! functions = 4096                      # total PCI functions, described ones included
//! max_vfs_per_pf = 64
//!
//! [[file]]                              # written last; overwrites anything
//! path = "etc/default/grub"
//! content = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n"   # or bytes = [0xff, 0xfe]
//!
//! [[link]]                              # symlink, target verbatim, may dangle
//! path = "sys/bus/pci/devices/0000:00:1f.6/driver"
//! target = "../../../bus/pci/drivers/e1000e"
//!
//! [[dir]]                               # empty directory
//! path = "sys/kernel/iommu_groups/7"
//! ```
//!
//! A description can instead extend another one in the same directory: it then holds only
//! `extends`, `remove`, `[[device]]`, `[[file]]`, `[[link]]` and `[[dir]]`, which are added
//! to the base's (so a variant of a host states only what differs):
//!
//! ```toml
//! extends = "apu-shared-group"          # ./apu-shared-group.toml
//! [[file]]
//! path = "proc/mounts"
//! content = "/dev/sda2 / ext4 rw 0 0\n"
//! ```
//!
//! # What the tree contains
//!
//! - `sys/devices/pciDDDD:BB/…/<BDF>/` nested by parent, with `vendor`, `device`,
//!   `subsystem_*`, `class`, `revision`, a 64-byte `config` (type 0/1 header,
//!   multifunction bit, bus numbers), `modalias`, `enable`, `irq`, `local_cpulist`,
//!   `numa_node`, `driver_override`, `power_state`, `d3cold_allowed`, `power/`,
//!   `resource` (text) and empty placeholders for `resource0`, `rom`, `remove`,
//!   `rescan` (and `reset` when a reset method exists); bridges have
//!   `pci_bus/DDDD:BB/`.
//! - Links: `sys/bus/pci/devices/<BDF>`, `driver` (+ the driver's back-link and
//!   `module`), `iommu_group` (+ `sys/kernel/iommu_groups/N/{devices/,type,
//!   reserved_regions}`), `subsystem` (a loop: never follow it), `physfn`/`virtfnN`,
//!   DRM `sys/class/drm/cardN`, `dev/dri/by-path/pci-<BDF>-card|render`.
//! - `proc/{cmdline,version,cpuinfo,modules,devices,interrupts}`,
//!   `proc/sys/kernel/osrelease`, `lib/modules/<rel>/modules.builtin`,
//!   `sys/firmware/{efi,acpi/tables}`, `sys/class/iommu/*`, `sys/module/*`.
//! - `dev/dri/cardN` and `renderD*` are empty regular files (no device nodes).
//! - Anything in `etc/`, `var/`, `boot/` comes from `[[file]]` extras only.
#![deny(missing_docs)]

mod build;
mod desc;
mod generate;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use desc::{
    ConnectorDesc, CpuDesc, DeviceDesc, DirDesc, DrmDesc, FileDesc, GenerateDesc, HostDesc,
    HostInfo, IommuDesc, LinkDesc, ModuleDesc,
};

/// Why a description could not be loaded or built. `Display` names the file.
#[derive(Debug)]
pub enum Error {
    /// The description file could not be read.
    Read {
        /// The description.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The description is not valid TOML or does not match the schema.
    Parse {
        /// The description.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// Writing the tree failed (or the description is inconsistent).
    Build {
        /// The description, when known.
        desc: Option<PathBuf>,
        /// The root being written.
        root: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => {
                write!(
                    f,
                    "cannot read host description {}: {source}",
                    path.display()
                )
            }
            Error::Parse { path, source } => {
                write!(f, "invalid host description {}: {source}", path.display())
            }
            Error::Build { desc, root, source } => match desc {
                Some(d) => write!(
                    f,
                    "cannot build {} from {}: {source}",
                    root.display(),
                    d.display()
                ),
                None => write!(f, "cannot build {}: {source}", root.display()),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } | Error::Build { source, .. } => Some(source),
            Error::Parse { source, .. } => Some(source.as_ref()),
        }
    }
}

/// Parses a description from TOML text (`path` names it in errors, and its directory is
/// where an `extends` base is looked up).
pub fn parse_desc(text: &str, path: &Path) -> Result<HostDesc, Error> {
    let parse_err = |e| Error::Parse {
        path: path.to_path_buf(),
        source: Box::new(e),
    };
    let value: toml::Table = toml::from_str(text).map_err(parse_err)?;
    if !value.contains_key("extends") {
        return toml::from_str(text).map_err(parse_err);
    }
    let overlay: desc::Overlay = toml::from_str(text).map_err(parse_err)?;
    let base_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{}.toml", overlay.extends));
    let mut desc = load_desc(&base_path)?;
    desc.remove.extend(overlay.remove);
    desc.devices.extend(overlay.devices);
    desc.files.extend(overlay.files);
    desc.links.extend(overlay.links);
    desc.dirs.extend(overlay.dirs);
    Ok(desc)
}

/// Loads a description file.
pub fn load_desc(path: &Path) -> Result<HostDesc, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_desc(&text, path)
}

/// Writes the root tree described by `desc` under `root` (created if missing).
///
/// Building into a non-empty directory overwrites generated paths but leaves
/// other files alone; use a fresh directory.
pub fn build_host(desc: &HostDesc, root: &Path) -> io::Result<()> {
    build::build(desc, root)
}

/// Every PCI function of the host: the described ones, then the generated ones
/// (`[generate]`), in the order they are written.
pub fn all_devices(desc: &HostDesc) -> io::Result<Vec<DeviceDesc>> {
    let mut all = desc.devices.clone();
    if let Some(g) = &desc.generate {
        all.extend(generate::server(g, desc)?);
    }
    Ok(all)
}

/// A parent directory for throw-away trees: `/dev/shm` when it is a writable
/// directory (tmpfs: building `server-4096`, about 170,000 files, takes seconds
/// there and can take a minute on a slow disk), else [`std::env::temp_dir`].
pub fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly())
        && tempfile_probe(shm);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn tempfile_probe(dir: &Path) -> bool {
    let probe = dir.join(format!(".passthru-testkit-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    // Best effort: the probe directory is empty, nothing is lost if removal fails.
    let _ = std::fs::remove_dir(&probe);
    ok
}

/// `<workspace>/tests/fixtures/synthetic`, where the named descriptions live.
pub fn synthetic_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("synthetic")
}

/// Names of the descriptions in [`synthetic_dir`] (file stems, sorted).
pub fn synthetic_names() -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(synthetic_dir())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Loads `synthetic_dir()/NAME.toml` and builds it under `root`.
pub fn build_named(name: &str, root: &Path) -> Result<(), Error> {
    let path = synthetic_dir().join(format!("{name}.toml"));
    let desc = load_desc(&path)?;
    build_host(&desc, root).map_err(|source| Error::Build {
        desc: Some(path),
        root: root.to_path_buf(),
        source,
    })
}
