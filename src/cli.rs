//! Command-line arguments as the user gave them. Resolving them into a snapshot happens in
//! `cmd/mod.rs`; nothing here reads the host.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use passthru::output::style::ColorChoice;

/// Give a GPU to a VM, share it with containers, or find out whether you can: passthru reads
/// this machine's PCI devices, IOMMU groups, drivers and boot setup.
#[derive(Debug, Parser)]
#[command(name = "passthru", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub source: SourceArgs,

    /// When to use colour: auto (a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 `check`: a GPU is not ready for the judged use, or no GPU matched; \
`verify`: the host drifted from what passthru prepared; 2 error (bad arguments, an \
unreadable --from file, a file passthru would edit but cannot read or parse safely); 130 \
interrupted. A closed pipe counts as success, except for a command that changed the host.

Root: list, scan, check, advise, power, docker and mapping list need no root (attributes \
only root may read are reported as unknown). setup, rollback, bind, unbind, vm, lxc, \
libvirt, mapping create, power --runtime-pm, setup status and verify (passthru's journal is \
root's) need root: log in as root (Proxmox VE has no sudo), or prefix them with sudo.";

/// Where the host comes from.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Read the host below DIR instead of / (a fixture tree, or an unpacked scan archive).
    /// Without this option, the PASSTHRU_ROOT environment variable is used when set (and
    /// ignored with --from).
    #[arg(long, value_name = "DIR", global = true, conflicts_with = "from")]
    pub root: Option<PathBuf>,

    /// Work from a snapshot saved by `passthru scan --json` instead of reading a host.
    #[arg(long, value_name = "FILE", global = true)]
    pub from: Option<PathBuf>,

    /// PCI ID database for names (default: pci.ids under the root, then the system's).
    #[arg(long, value_name = "FILE", global = true)]
    pub pci_ids: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// IOMMU groups and their devices, GPUs highlighted.
    List(ListArgs),
    /// Read the whole host into one snapshot: print a summary, the JSON, or an archive.
    Scan(ScanArgs),
    /// One verdict per GPU and use (vm, lxc, host, shared), with the evidence and the exact fix.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Prepare a GPU for VM passthrough, or give it back to the host, as one reviewed,
    /// reversible transaction.
    #[command(subcommand)]
    Setup(SetupCommand),
    /// Undo a transaction (the last one by default) byte for byte.
    Rollback(RollbackArgs),
    /// Attach a GPU to a Proxmox VM, or detach it.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Proxmox cluster PCI resource mappings.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// A Proxmox VE cluster through its API: every node's GPUs, the PCI mappings that
    /// name them, and where a VM can run.
    #[command(after_help = CLUSTER_HELP)]
    Cluster(ClusterArgs),
    /// Split one GPU among several guests (SR-IOV virtual functions).
    #[command(subcommand)]
    Share(ShareCommand),
    /// Share a GPU with a Proxmox LXC container, or stop sharing it.
    #[command(subcommand)]
    Lxc(LxcCommand),
    /// Attach a GPU to a libvirt domain, or detach it.
    #[command(subcommand)]
    Libvirt(LibvirtCommand),
    /// Print the Docker compose and CLI lines that give a container this GPU.
    Docker(DockerArgs),
    /// Print (and with --yes run) the `incus config device add` line for a GPU.
    Incus(IncusArgs),
    /// Which GPU for a job: VRAM and speed estimates, slot and power fit, yearly power cost.
    Advise(AdviseArgs),
    /// What each GPU draws now (read without waking it) and costs a year.
    Power(PowerArgs),
    /// The host on one self-contained HTML page: the PCI tree with its IOMMU groups, the
    /// GPUs' verdicts, the findings, power and cost. For a bug report or a forum thread.
    Report(ReportArgs),
    /// Bind a GPU (and every endpoint of its groups) to vfio-pci now, without a reboot.
    Bind(BindArgs),
    /// Give a GPU on vfio-pci back to its host driver now.
    Unbind(BindArgs),
    /// Check that what passthru prepared still holds, now and at the next boot.
    ///
    /// Compares passthru's journal with the running host and the next boot: cards still on
    /// vfio-pci, the next kernel's initramfs and modules, NVIDIA libraries, Proxmox hostpci
    /// addresses, passthru's own files. Each problem with its evidence and exact fix.
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify(VerifyArgs),
    /// Apply a saved plan (JSON). For tests and debugging.
    #[command(hide = true)]
    DebugApplyPlan(DebugApplyArgs),
    /// Write the man pages and shell completions below DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets(GenerateAssetsArgs),
}

/// What every writing command takes.
#[derive(Debug, Args, Clone, Copy)]
pub struct WriteArgs {
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// Only show the change (a diff and the commands); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON (each edit with the digests before and after,
    /// the commands, the notes) instead of a diff.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

/// `--json` alone, for a listing command.
#[derive(Debug, Args, Clone, Copy)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Prepare GPU for VM passthrough: kernel parameters, vfio modules, early binding.
    Vm(SetupVmArgs),
    /// Give GPU back to its host driver (removes passthru's binding for it).
    Host(SetupHostArgs),
    /// The transactions in the journal and passthru's files on this host.
    Status(JsonArgs),
}

#[derive(Debug, Args)]
pub struct SetupVmArgs {
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// Keep the firmware framebuffer off this GPU (initcall_blacklist=sysfb_init): for the
    /// boot GPU.
    #[arg(long)]
    pub boot_gpu: bool,
    /// Keep vfio-pci from putting idle GPUs in D3 (for families that do not come back).
    #[arg(long)]
    pub disable_idle_d3: bool,
    /// Take the host's only display, boot disk controller or network anyway.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct SetupHostArgs {
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct BindArgs {
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// Take the host's only display, boot disk controller or network anyway.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Transaction id (`passthru setup status` lists them); default the last one.
    pub id: Option<String>,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct GenerateAssetsArgs {
    /// The directory to write man/ and completions/ in.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DebugApplyArgs {
    /// The plan, as JSON.
    pub plan: PathBuf,
    #[command(flatten)]
    pub write: WriteArgs,
}

pub const CHECK_EXIT_CODES: &str = "Exit codes: 0 every selected GPU is ready for the requested use(s); 1 some GPU is not (or no GPU matched); 2 error.";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// GPUs to check: an address (01:00.0 or 0000:01:00.0), vendor:device (10de:2206) or part
    /// of the name. Default: every GPU (PCI class 03xx).
    pub gpus: Vec<String>,
    /// The use(s) the exit code judges, and the only ones shown (repeatable). Default: all
    /// uses are shown and the exit code judges vm.
    #[arg(long = "for", value_enum, value_name = "USE")]
    pub uses: Vec<passthru::check::Use>,
    /// Do not block on the host's boot disk, network or only display sharing the GPU's group
    /// (they become warnings).
    #[arg(long)]
    pub force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub const VERIFY_EXIT_CODES: &str = "Exit codes: 0 everything passthru prepared still holds (pending and unknown findings included); 1 something drifted (each finding says what and how to fix it); 2 error.";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only what the next boot will find: the next kernel's initramfs and modules, and
    /// passthru's files (for the kernel postinst hook, before the reboot).
    #[arg(long)]
    pub next_boot: bool,
    /// The kernel release the next boot runs (default: GRUB's default entry, the
    /// proxmox-boot-tool pin, else the newest installed kernel).
    #[arg(long, value_name = "RELEASE")]
    pub kernel: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the result in the node_exporter textfile-collector format to FILE
    /// (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show each GPU with the devices that share its IOMMU group.
    #[arg(long, conflicts_with = "tree")]
    pub gpus: bool,
    /// Show the PCI topology as a tree (root buses, bridges, endpoints), each device with its
    /// IOMMU group, GPUs with their verdicts, and what blocks them.
    #[arg(long, conflicts_with = "json")]
    pub tree: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the page to FILE (`-` for standard output). The page loads nothing from the
    /// network: open it from disk, or attach it to a mail or a forum post.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
    /// Electricity price per kWh, for the yearly costs.
    #[arg(long, default_value_t = 0.30)]
    pub price_kwh: f64,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Print the snapshot as JSON (save it and pass it to --from later).
    #[arg(long)]
    pub json: bool,
    /// Copy the files passthru reads into FILE.tar.gz, to attach to a bug report or use as a
    /// test fixture (never reads BARs, ROMs, or more than 64 bytes of config space).
    #[arg(long, value_name = "FILE.tar.gz", conflicts_with = "from")]
    pub archive: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Add a hostpciN entry for every function of the GPU's slot (or a mapping), with the VM
    /// settings it needs (q35 and pcie=1, OVMF, x-vga=1 for a primary GPU).
    Attach(VmAttachArgs),
    /// Remove the GPU's hostpci entries from the VM.
    Detach(VmDetachArgs),
}

#[derive(Debug, Args)]
pub struct VmAttachArgs {
    /// The Proxmox VM id (etc/pve/qemu-server/VMID.conf).
    pub vmid: u32,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// The VM's primary display (x-vga=1).
    #[arg(long)]
    pub primary: bool,
    /// Use this cluster resource mapping instead of the address (mapping=NAME). With
    /// `--vf auto`: the pool of the card's VFs, made (one entry per VF on this node) or
    /// completed in the same change when needed; Proxmox picks a free VF at each VM start.
    #[arg(long, value_name = "NAME")]
    pub mapping: Option<String>,
    /// rombar=0 hides the card's ROM from the guest (Proxmox's rombar is 0 or 1).
    #[arg(long, value_name = "0|1", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub rombar: Option<u8>,
    /// A ROM file name in /usr/share/kvm/ (a name, not a path: Proxmox prefixes the directory).
    #[arg(long, value_name = "FILE")]
    pub romfile: Option<String>,
    /// Hide the hypervisor from the guest (cpu hidden=1), for old GeForce drivers.
    #[arg(long)]
    pub hidden: bool,
    /// A virtual function of the card instead of the card: `auto` (the first no VM has) or
    /// its number (virtfnN). With `--mapping NAME` only `auto`: the VM names the pool.
    #[arg(long, value_name = "auto|N")]
    pub vf: Option<passthru::plan::attach_shared::VfChoice>,
    /// A mediated device of the card (`hostpciN: …,mdev=TYPE`; Proxmox creates it at VM
    /// start), after checking the type has an instance free.
    #[arg(long, value_name = "TYPE")]
    pub mdev: Option<String>,
    /// Attach even what check blocks (the host's only display, boot disk controller or
    /// network in the group).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct VmDetachArgs {
    /// The Proxmox VM id.
    pub vmid: u32,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Make N virtual functions of a card at every boot (kernel parameters for its driver, a
    /// udev rule with autoprobe off, each VF bound to vfio-pci by address); `--count 0`
    /// takes them away. `passthru rollback` undoes it.
    Vfs(ShareVfsArgs),
    /// Make N mediated devices of one type on a parent at every boot (a udev rule, with UUIDs
    /// that stay the same), for libvirt domains (`libvirt attach … --mdev TYPE`); `--count 0`
    /// takes them away. Not on Proxmox, which makes an mdev when its VM starts.
    Mdev(ShareMdevArgs),
}

#[derive(Debug, Args)]
pub struct ShareMdevArgs {
    /// The parent: a GPU selector, a PCI address, or a virtual parent's name as in
    /// /sys/class/mdev_bus (`mtty`).
    pub parent: String,
    /// The mdev type (a name in the parent's mdev_supported_types, e.g. i915-GVTg_V5_4).
    #[arg(long = "type", value_name = "TYPE")]
    pub mdev_type: String,
    /// How many instances (0 removes passthru's).
    #[arg(long)]
    pub count: u32,
    /// Also make (or remove) them now, as a second transaction that `rollback` undoes first.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct ShareVfsArgs {
    /// The physical function: a GPU selector, or the address of any device with SR-IOV.
    pub device: String,
    /// How many VFs (0 removes them).
    #[arg(long)]
    pub count: u32,
    /// Also make (or remove) them now, as a second transaction that `rollback` undoes first.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Map GPU on this node under NAME (etc/pve/mapping/pci.cfg).
    Create(MappingCreateArgs),
    /// The mappings in etc/pve/mapping/pci.cfg.
    List(JsonArgs),
}

#[derive(Debug, Args)]
pub struct MappingCreateArgs {
    /// The mapping's id (what VMs name with mapping=NAME).
    pub name: String,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// Map the card's virtual functions as a pool instead of the card: one entry per VF on
    /// this node (Proxmox starts a VM with the first free one). An existing mapping NAME is
    /// checked (only VFs of this card on this node) and given the VFs it lacks.
    #[arg(long)]
    pub vfs: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Subcommand)]
pub enum LxcCommand {
    /// Give container CTID the GPU's device nodes (devN on Proxmox 8.1+, lxc.* lines before).
    Share(LxcShareArgs),
    /// Remove the GPU's device nodes from container CTID.
    Unshare(LxcUnshareArgs),
}

#[derive(Debug, Args)]
pub struct LxcShareArgs {
    /// The Proxmox container id (etc/pve/lxc/CTID.conf).
    pub ctid: u32,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// The container's render gid, when its etc/group cannot be read from here.
    #[arg(long)]
    pub gid: Option<u32>,
    /// Also /dev/kfd (ROCm on AMD).
    #[arg(long)]
    pub kfd: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct LxcUnshareArgs {
    /// The Proxmox container id.
    pub ctid: u32,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Subcommand)]
pub enum LibvirtCommand {
    /// Add one <hostdev> per function of the GPU's card to DOMAIN.
    Attach(LibvirtAttachArgs),
    /// Remove the card's <hostdev> elements from DOMAIN.
    Detach(LibvirtDetachArgs),
}

#[derive(Debug, Args)]
pub struct LibvirtAttachArgs {
    /// The libvirt domain's name (etc/libvirt/qemu/DOMAIN.xml).
    pub domain: String,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// A ROM file for the card (<rom file='FILE'/>).
    #[arg(long, value_name = "FILE")]
    pub romfile: Option<String>,
    /// <kvm><hidden state='on'/></kvm> and a Hyper-V vendor_id.
    #[arg(long)]
    pub hidden: bool,
    /// A virtual function of the card (by address): `auto` (the first no domain has) or N.
    #[arg(long, value_name = "auto|N", conflicts_with = "mdev")]
    pub vf: Option<passthru::plan::attach_shared::VfChoice>,
    /// A live mediated device of this type that no domain uses (type='mdev', by UUID).
    #[arg(long, value_name = "TYPE")]
    pub mdev: Option<String>,
    /// Attach even what check blocks (the host's only display, boot disk controller or
    /// network in the group).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct LibvirtDetachArgs {
    /// The libvirt domain's name.
    pub domain: String,
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct IncusArgs {
    /// The Incus instance (container or VM).
    pub instance: String,
    /// The GPU: its address (07:00.0), slot (07:00), vendor:device (10de:2206) or a word of its
    /// name.
    pub gpu: String,
    /// The device name in the instance.
    #[arg(long, default_value = "gpu0")]
    pub device: String,
    /// A VF of the card, for a VM (gputype=sriov).
    #[arg(long, conflicts_with = "mdev")]
    pub vf: bool,
    /// An mdev of this type, for a VM (gputype=mdev).
    #[arg(long, value_name = "TYPE")]
    pub mdev: Option<String>,
    /// Run it (on the live host only), as an argument vector.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DockerArgs {
    /// The GPU: address, vendor:device or part of its name.
    pub gpu: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AdviseArgs {
    /// The job.
    #[arg(long = "use", value_enum)]
    pub use_case: passthru::advise::rank::UseCase,
    /// LLM: a model name (llama-3.1-8b, qwen2.5-32b ...) or a size (8b, 13b, 70b).
    #[arg(long)]
    pub model: Option<String>,
    /// LLM: llama.cpp quantisation.
    #[arg(long, default_value = "Q4_K_M")]
    pub quant: String,
    /// LLM: context length in tokens.
    #[arg(long, default_value_t = 8192)]
    pub context: u32,
    /// Transcoding: simultaneous 4K streams.
    #[arg(long, default_value_t = 2)]
    pub streams: u32,
    /// Most you would pay for a used card, in USD.
    #[arg(long)]
    pub budget: Option<f64>,
    /// The box it goes in: n100, hp-elitedesk-mini, optiplex-micro, optiplex-sff, optiplex-mt,
    /// diy-nas, r730, proxmox-cluster. Without it, passthru advises for the host it reads.
    #[arg(long)]
    pub server: Option<String>,
    /// Electricity price per kWh, for the yearly cost.
    #[arg(long, default_value_t = 0.30)]
    pub price_kwh: f64,
    /// Only these cards (catalog key such as rtx-3090, or name); repeatable.
    #[arg(long, value_name = "NAME|KEY")]
    pub gpu: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// Print again every SECS seconds (Ctrl-C stops).
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// Write the node_exporter textfile-collector format to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Electricity price per kWh.
    #[arg(long, default_value_t = 0.30)]
    pub price_kwh: f64,
    /// Set runtime power management (power/control) for GPU, persistently (a udev rule,
    /// through the setup transaction): on (never suspend) or auto.
    #[arg(long, value_name = "on|auto", requires = "gpu")]
    pub runtime_pm: Option<String>,
    /// The GPU for --runtime-pm.
    pub gpu: Option<String>,
    /// Print JSON instead of text (with --watch, one JSON document a line; with
    /// --runtime-pm --dry-run, the plan).
    #[arg(long)]
    pub json: bool,
    /// With --runtime-pm: apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// With --runtime-pm: only show the change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl PowerArgs {
    /// What --runtime-pm's transaction takes (`--json` is power's own, for the readings too).
    pub fn write(&self) -> WriteArgs {
        WriteArgs {
            yes: self.yes,
            dry_run: self.dry_run,
            json: self.json && self.dry_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument and option of every subcommand has a help line, and every command
    /// says what it does: the man pages and `--help` are made from these.
    #[test]
    fn every_argument_of_every_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("{path}: the command itself"));
            }
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }

    /// `--help` names every exit code passthru uses, and who needs root.
    #[test]
    fn help_names_every_exit_code_and_root() {
        let help = Cli::command().render_long_help().to_string();
        for code in [
            "0 success",
            "1 `check`",
            "`verify`",
            "2 error",
            "130 interrupted",
        ] {
            assert!(help.contains(code), "{code} missing from --help:\n{help}");
        }
        assert!(help.contains("Proxmox VE has no sudo"), "{help}");
    }
}

pub const CLUSTER_HELP: &str = "Without --api, passthru runs `pvesh ... --output-format json` on this node (as root). \
With --api https://HOST:8006 it needs an API token in a file (--token-file FILE or PASSTHRU_PVE_TOKEN_FILE; \
one line USER@REALM!TOKENID=SECRET), never on the command line. docs/cluster.md lists the privileges. \
Exit codes: 0 success; 1 list: a node or part could not be read, check: findings, place: no node can start it; \
2 error (bad arguments, TLS certificate refused, token refused).";

/// `passthru cluster ...` and where it talks to.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: ClusterConnArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// How `cluster` reaches the Proxmox API.
#[derive(Debug, Args)]
pub struct ClusterConnArgs {
    /// The API of any cluster node, https://HOST:8006 (default: pvesh on this node).
    #[arg(long, value_name = "URL", global = true)]
    pub api: Option<String>,
    /// A file holding the API token, one line USER@REALM!TOKENID=SECRET (default:
    /// $PASSTHRU_PVE_TOKEN_FILE). Only with --api.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Accept only the certificate with this SHA-256 fingerprint, as `pvenode cert info`
    /// prints it (AA:BB:...:FF). Without it, the system's CAs must trust the certificate.
    #[arg(long, value_name = "SHA256", global = true)]
    pub fingerprint: Option<String>,
    /// Seconds to wait for each answer; a node that does not answer in time is reported
    /// and the others are shown.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    pub timeout: f64,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node's status and GPUs, the guests that use each, and the mappings that name it.
    List(ClusterListArgs),
    /// Every mapping entry against its node's hardware, nodes with a matching GPU but no
    /// entry, and guests whose raw hostpci address no longer names the same card.
    Check(ClusterListArgs),
    /// Create or refresh mapping NAME with one entry per node holding a matching GPU.
    Map(ClusterMapArgs),
    /// Which nodes could start a VM now (a healthy mapping entry, a GPU no running guest
    /// holds), best first, and why each other node is left out.
    Place(ClusterPlaceArgs),
}

#[derive(Debug, Args)]
pub struct ClusterListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClusterMapArgs {
    /// The mapping's id (a letter, then letters, digits, `_` or `-`).
    pub name: String,
    /// The GPU on each node: vendor:device (10de:2504), an address, or part of its name.
    #[arg(long, value_name = "SELECTOR")]
    pub gpu: String,
    /// Write only these nodes' entries (comma-separated); the others are kept as they are.
    #[arg(long, value_name = "NODE,...", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Also write the HA node-affinity rule (strict) that keeps these VMs (default: every
    /// VM using the mapping) on the nodes that have an entry.
    #[arg(long, value_name = "VMID,...", value_delimiter = ',', num_args = 0..)]
    pub ha: Option<Vec<u32>>,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["vmid", "mapping"]))]
pub struct ClusterPlaceArgs {
    /// The VM to place.
    pub vmid: Option<u32>,
    /// Place a VM that would use one entry of this mapping.
    #[arg(long, value_name = "NAME")]
    pub mapping: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
