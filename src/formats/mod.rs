//! Pure text formats: `parse_*` turns file contents into data, nothing here touches the host.

pub mod cmdline;
pub mod grub_defaults;
pub mod json_spans;
pub mod libvirt_xml;
pub mod modprobe;
pub mod os_release;
pub mod pve_config;
pub mod shell_vars;
pub mod udev;
