//! PCI addresses, class codes and the per-function record. Pure data; no I/O.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::Issue;

/// A PCI function address, `DDDD:BB:SS.F`.
///
/// The domain is 16 bits on most hosts, but Intel VMD exposes 32-bit domains
/// (`10000:e0:1d.0`), so it is kept as `u32` and printed with at least four digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// The slot (domain, bus, device) this function belongs to: functions of one slot are one card.
    pub fn same_slot(&self, other: &PciAddress) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.device == other.device
    }
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a PCI address (expected DDDD:BB:SS.F or BB:SS.F)")]
pub struct ParseAddressError(pub String);

impl FromStr for PciAddress {
    type Err = ParseAddressError;

    /// Accepts the full `0000:01:00.0` form and the short `01:00.0` form (domain 0), as lspci does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddressError(s.to_string());
        let (head, function) = s.rsplit_once('.').ok_or_else(err)?;
        let mut parts = head.rsplitn(3, ':');
        let device = parts.next().ok_or_else(err)?;
        let bus = parts.next().ok_or_else(err)?;
        let domain = parts.next();
        let hex = |t: &str, max_len: usize| -> Result<u32, ParseAddressError> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(t, 16).map_err(|_| err())
        };
        let domain = match domain {
            Some(d) => hex(d, 8)?,
            None => 0,
        };
        let bus = hex(bus, 2)? as u8;
        let device = hex(device, 2)?;
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(err());
        }
        Ok(PciAddress {
            domain,
            bus,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The 24-bit PCI class code `0xCCSSPP`: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassCode(pub u32);

impl ClassCode {
    pub fn base(self) -> u8 {
        (self.0 >> 16) as u8
    }
    pub fn sub(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn prog_if(self) -> u8 {
        self.0 as u8
    }
    /// Base and subclass as lspci prints them in brackets (`0300`).
    pub fn class16(self) -> u16 {
        (self.0 >> 8) as u16
    }
    /// Any display controller (base class 0x03): VGA 0x0300, 3D 0x0302, display 0x0380.
    ///
    /// Matching on class *names* misses 3D and "Display controller" GPUs (ls-iommu#3,
    /// system76-power#385), so the decision is made on the number.
    pub fn is_gpu(self) -> bool {
        self.base() == 0x03
    }
    /// VGA-compatible controllers are the only ones the kernel gives a `boot_vga` file.
    pub fn is_vga(self) -> bool {
        self.class16() == 0x0300
    }
    /// PCI-to-PCI bridges and root/downstream ports (0x0604) and semi-transparent bridges (0x0609).
    pub fn is_pci_bridge(self) -> bool {
        matches!(self.class16(), 0x0604 | 0x0609)
    }
    /// Any bridge class (host, ISA, PCI ...): base class 0x06.
    pub fn is_bridge_class(self) -> bool {
        self.base() == 0x06
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

impl Serialize for ClassCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClassCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 6 {
            return Err(serde::de::Error::custom(format!(
                "class '{s}' is not 6 hex digits"
            )));
        }
        u32::from_str_radix(&s, 16)
            .map(ClassCode)
            .map_err(serde::de::Error::custom)
    }
}

/// A 16-bit PCI id (vendor, device, subsystem), serialised as 4 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciId(pub u16);

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl Serialize for PciId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 4 {
            return Err(serde::de::Error::custom(format!(
                "id '{s}' is not 4 hex digits"
            )));
        }
        u16::from_str_radix(&s, 16)
            .map(PciId)
            .map_err(serde::de::Error::custom)
    }
}

/// Names from pci.ids, resolved when the snapshot was read so that a snapshot moved to
/// another machine prints the same names. Each is what `lspci -nn` prints for that part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceNames {
    /// `"NVIDIA Corporation GA102 [GeForce RTX 3080]"`: lspci's text before `[vvvv:dddd]`.
    pub name: String,
    /// Class name (`"VGA compatible controller"`), lspci's text before `[ccss]`.
    pub class: String,
    pub vendor: Option<String>,
    pub device: Option<String>,
    /// Subsystem name as lspci prints it after `Subsystem:`.
    pub subsystem: Option<String>,
}

/// Reset capabilities as the kernel reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResetInfo {
    /// `reset_method` (kernel 5.15+), in the kernel's priority order. `None`: no such file, which
    /// on 5.15+ means the device has no reset method at all.
    pub methods: Option<Vec<String>>,
    /// The older `reset` file exists (the kernel offers some reset).
    pub reset_file: bool,
}

/// Power management state, read without waking the device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PowerInfo {
    /// `power_state`: `D0`, `D3hot`, `D3cold`, ...
    pub state: Option<String>,
    /// `power/runtime_status`: `active`, `suspended`, `unsupported`, ...
    pub runtime_status: Option<String>,
    /// `power/control`: `auto` or `on`.
    pub control: Option<String>,
    pub d3cold_allowed: Option<bool>,
}

/// PCIe link as negotiated now and at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkInfo {
    pub current_speed: Option<String>,
    pub current_width: Option<String>,
    pub max_speed: Option<String>,
    pub max_width: Option<String>,
}

/// SR-IOV physical function capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SriovInfo {
    pub total_vfs: Option<u32>,
    pub num_vfs: Option<u32>,
    /// The VFs' addresses, from the `virtfnN` links, in N order.
    pub vfs: Vec<PciAddress>,
    /// `sriov_drivers_autoprobe`: whether host drivers probe new VFs. Written 0 before
    /// `sriov_numvfs` keeps the host driver off them (Documentation/PCI/pci-iov-howto.rst).
    #[serde(default)]
    pub drivers_autoprobe: Option<bool>,
    /// `sriov_vf_device`: the device id the VFs will have.
    #[serde(default)]
    pub vf_device: Option<PciId>,
    /// First VF Offset and VF Stride of the SR-IOV capability (config space 0x14/0x16 of the
    /// extended capability 0x0010; PCIe base spec 9.3.3): where the VFs will appear before
    /// they exist. `None` when config space past 256 bytes could not be read (not root).
    #[serde(default)]
    pub vf_offset_stride: Option<(u16, u16)>,
}

impl SriovInfo {
    /// The address of VF `i` (0-based): routing id = PF's + offset + i × stride
    /// (PCIe base spec 9.3.3.9-10, what the kernel's pci_iov_virtfn_bus/devfn compute).
    pub fn vf_address(&self, pf: &PciAddress, i: u32) -> Option<PciAddress> {
        if let Some(a) = self.vfs.get(i as usize) {
            return Some(*a);
        }
        let (offset, stride) = self.vf_offset_stride?;
        let rid = (u32::from(pf.bus) << 8) | (u32::from(pf.device) << 3) | u32::from(pf.function);
        let vf = rid + u32::from(offset) + i * u32::from(stride);
        (vf <= 0xffff).then_some(PciAddress {
            domain: pf.domain,
            bus: (vf >> 8) as u8,
            device: ((vf >> 3) & 0x1f) as u8,
            function: (vf & 7) as u8,
        })
    }
}

/// One mediated-device type a parent offers (`mdev_supported_types/<id>/`), the files Incus
/// and Proxmox read (Documentation/driver-api/vfio-mediated-device.rst).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MdevType {
    /// The directory name, what `hostpciN: …,mdev=` and libvirt's `model=` take
    /// (`i915-GVTg_V5_4`, `nvidia-63`).
    pub id: String,
    /// `name`: optional in the kernel's interface.
    pub name: Option<String>,
    /// `description`: free text, several lines for NVIDIA.
    pub description: Option<String>,
    /// `available_instances`: how many more can be created now.
    pub available_instances: Option<u32>,
    /// `device_api`: `vfio-pci`, `vfio-ccw` ...
    pub device_api: Option<String>,
    /// The UUIDs of the instances of this type (`devices/`).
    pub devices: Vec<String>,
}

/// NVIDIA's vendor VFIO interface on a VF (`nvidia/`, vGPU 17+ on kernel 6.8 and newer):
/// no mdev; a vGPU is made by writing a type id to `current_vgpu_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NvidiaVfVgpu {
    /// `nvidia/creatable_vgpu_types`: `(id, name)` per `ID : name` line; empty when the VF
    /// can take no type now (the PF's other VFs hold a profile of another size).
    pub creatable: Vec<(u32, String)>,
    /// `nvidia/current_vgpu_type`: `0` when the VF carries no vGPU.
    pub current: Option<u32>,
}

/// One PCI function as sysfs describes it. `None` means the file was absent; when a file was
/// present but unreadable or garbled the field is `None` and `issues` says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PciDevice {
    pub address: PciAddress,
    pub class: Option<ClassCode>,
    pub vendor: Option<PciId>,
    pub device: Option<PciId>,
    pub subsystem_vendor: Option<PciId>,
    pub subsystem_device: Option<PciId>,
    pub revision: Option<u8>,
    pub names: DeviceNames,
    /// Bound driver name (the `driver` link's target), `None` when unbound.
    pub driver: Option<String>,
    /// Module providing that driver (`driver/module`), which can differ from the driver name
    /// (`xhci_hcd` comes from `xhci_pci`). `None` when built in or unbound.
    pub driver_module: Option<String>,
    /// `driver_override`; `None` when unset (`(null)`) or absent.
    pub driver_override: Option<String>,
    /// Name of the IOMMU group directory (`"14"`, or `"noiommu-0"`), `None` when not in a group.
    pub iommu_group: Option<String>,
    /// `boot_vga`; only VGA-class devices have the file.
    pub boot_vga: Option<bool>,
    pub reset: ResetInfo,
    pub power: PowerInfo,
    pub numa_node: Option<i32>,
    pub link: LinkInfo,
    pub sriov: Option<SriovInfo>,
    /// The PF this VF belongs to (`physfn` link).
    pub physfn: Option<PciAddress>,
    /// mdev types offered (`mdev_supported_types/*`), e.g. vGPU profiles.
    pub mdev_types: Vec<String>,
    /// The same types with their attributes.
    #[serde(default)]
    pub mdev_type_details: Vec<MdevType>,
    /// NVIDIA's per-VF vGPU files, `None` when the VF has no `nvidia/` directory.
    #[serde(default)]
    pub nvidia_vgpu: Option<NvidiaVfVgpu>,
    /// Upstream bridges from the root bus down to the direct parent, from the device's real path.
    pub parents: Vec<PciAddress>,
    /// The device is a bridge with a secondary bus (`pci_bus/` exists), as Proxmox decides it.
    pub has_secondary_bus: bool,
    pub modalias: Option<String>,
    /// Memory BARs from the `resource` text table: (start, end) physical addresses. Zeros
    /// are left out (unused BARs, or a non-root reader's view on some kernels).
    #[serde(default)]
    pub bars: Vec<(u64, u64)>,
    /// Every attribute was read (a `Full` read, or a device a `Check` read looks at).
    #[serde(default)]
    pub detailed: bool,
    /// What could not be read among the attributes `list` shows, and why.
    pub issues: Vec<Issue>,
    /// What could not be read among the other attributes (a `Full` read only).
    #[serde(default)]
    pub detail_issues: Vec<Issue>,
}

impl PciDevice {
    pub fn new(address: PciAddress) -> Self {
        PciDevice {
            address,
            class: None,
            vendor: None,
            device: None,
            subsystem_vendor: None,
            subsystem_device: None,
            revision: None,
            names: DeviceNames::default(),
            driver: None,
            driver_module: None,
            driver_override: None,
            iommu_group: None,
            boot_vga: None,
            reset: ResetInfo::default(),
            power: PowerInfo::default(),
            numa_node: None,
            link: LinkInfo::default(),
            sriov: None,
            physfn: None,
            mdev_types: Vec::new(),
            mdev_type_details: Vec::new(),
            nvidia_vgpu: None,
            parents: Vec::new(),
            has_secondary_bus: false,
            modalias: None,
            bars: Vec::new(),
            detailed: false,
            issues: Vec::new(),
            detail_issues: Vec::new(),
        }
    }

    /// Driven by NVIDIA's proprietary driver (not nouveau, not vfio-pci): the one whose
    /// nodes are /dev/nvidia* and whose telemetry is NVML.
    pub fn on_nvidia_driver(&self) -> bool {
        self.vendor.map(|v| v.0) == Some(0x10de) && self.driver.as_deref() == Some("nvidia")
    }

    pub fn is_gpu(&self) -> bool {
        self.class.is_some_and(ClassCode::is_gpu)
    }

    /// A bridge for isolation purposes: PCI bridge class, or a device with a secondary bus.
    pub fn is_bridge(&self) -> bool {
        self.has_secondary_bus || self.class.is_some_and(ClassCode::is_pci_bridge)
    }

    /// `vvvv:dddd`, or `None` when either id is unknown.
    pub fn vendor_device(&self) -> Option<String> {
        Some(format!("{}:{}", self.vendor?, self.device?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips_and_accepts_short_form() {
        let a: PciAddress = "0000:0b:00.1".parse().unwrap();
        assert_eq!(a.to_string(), "0000:0b:00.1");
        let short: PciAddress = "0b:00.1".parse().unwrap();
        assert_eq!(short, a);
        let vmd: PciAddress = "10000:e0:1d.0".parse().unwrap();
        assert_eq!(vmd.domain, 0x10000);
        assert_eq!(vmd.to_string(), "10000:e0:1d.0");
    }

    #[test]
    fn address_rejects_garbage() {
        for bad in [
            "",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "zz:00.0",
            "1:2:3:4.0",
            "0000:001:00.0",
            "noiommu-0",
            "0000:01:00.0x",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn class_predicates() {
        assert!(ClassCode(0x030000).is_gpu() && ClassCode(0x030000).is_vga());
        assert!(ClassCode(0x030200).is_gpu() && !ClassCode(0x030200).is_vga());
        assert!(ClassCode(0x038000).is_gpu());
        assert!(!ClassCode(0x040300).is_gpu());
        assert!(ClassCode(0x060400).is_pci_bridge());
        assert!(!ClassCode(0x060000).is_pci_bridge());
        assert_eq!(ClassCode(0x0c0330).to_string(), "0c0330");
    }
}

/// A JSON Schema for a type serialised as a string: its name, a description and a pattern.
#[macro_export]
macro_rules! string_schema {
    ($t:ty, $name:literal, $desc:literal, $pattern:literal) => {
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": $desc,
                    "pattern": $pattern,
                })
            }
        }
    };
}

string_schema!(
    PciAddress,
    "PciAddress",
    "A PCI address, domain:bus:device.function in lowercase hex (0000:07:00.0).",
    "^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$"
);
string_schema!(
    ClassCode,
    "ClassCode",
    "A PCI class code, 6 lowercase hex digits (030000).",
    "^[0-9a-f]{6}$"
);
string_schema!(
    PciId,
    "PciId",
    "A 16-bit PCI id (vendor, device, subsystem), 4 lowercase hex digits (10de).",
    "^[0-9a-f]{4}$"
);
