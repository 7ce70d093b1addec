//! Deterministic generator for big servers (benchmarks, scale tests).
//!
//! Imitates a dual-socket Xeon Scalable (Sky Lake-SP) box: each CPU stack is a root
//! bus (`pci0000:17`, `pci0000:3a`, …) with four root ports (8086:2030–2033); every
//! root port carries a PLX PEX 8747 switch (upstream + four downstream ports), and
//! every downstream port one endpoint, cycling through an Intel X710 (two PFs with
//! VFs), a Samsung PM173X NVMe, a Mellanox ConnectX-5 (two PFs with VFs) and a
//! Broadcom SAS3008 HBA. When domain 0000 runs out of stacks it continues in domain
//! 0001, 0002, …. The last few functions are Sky Lake-E CHA uncore functions on root
//! bus 0x16. Every function gets its own IOMMU group, except the uncore slots
//! (one group per slot, as they lack ACS). No randomness: same input, same tree.

use std::io;

use crate::desc::{DeviceDesc, GenerateDesc, HostDesc};

/// Stack root buses of one domain (the first, 0x00, belongs to the description).
const STACKS: [u8; 6] = [0x17, 0x3a, 0x5d, 0x85, 0xae, 0xd7];
/// Bridges added per root port: root port, switch upstream, four downstream ports.
const BRIDGES_PER_PORT: usize = 6;

struct Gen {
    out: Vec<DeviceDesc>,
    next_group: u64,
    remaining: usize,
    cycle: usize,
    max_vfs: u16,
}

fn base(
    address: String,
    parent: Option<String>,
    class: u32,
    ids: [u16; 4],
    revision: u8,
    driver: Option<&str>,
) -> DeviceDesc {
    DeviceDesc {
        address,
        parent,
        class,
        vendor: ids[0],
        device: ids[1],
        subsystem_vendor: ids[2],
        subsystem_device: ids[3],
        revision,
        driver: driver.map(str::to_string),
        module: None,
        iommu_group: None,
        boot_vga: false,
        reset_method: None,
        power_state: "D0".to_string(),
        runtime_status: "active".to_string(),
        control: "on".to_string(),
        d3cold_allowed: true,
        numa_node: -1,
        link_speed: None,
        link_width: None,
        driver_override: "(null)".to_string(),
        sriov_totalvfs: None,
        sriov_numvfs: None,
        physfn: None,
        irq: None,
        secondary_bus: None,
        drm: None,
    }
}

fn bdf(domain: u16, bus: u8, slot: u8, func: u8) -> String {
    format!("{domain:04x}:{bus:02x}:{slot:02x}.{func:x}")
}

impl Gen {
    fn push(&mut self, mut d: DeviceDesc, numa: i32, own_group: bool) {
        d.numa_node = numa;
        if own_group {
            d.iommu_group = Some(self.next_group.to_string());
            self.next_group += 1;
        }
        self.remaining -= 1;
        self.out.push(d);
    }

    fn bridge(
        &mut self,
        addr: String,
        parent: Option<String>,
        ids: [u16; 4],
        rev: u8,
        numa: i32,
        link: (&str, &str),
    ) {
        let (speed, width) = link;
        let mut d = base(addr, parent, 0x060400, ids, rev, Some("pcieport"));
        d.link_speed = Some(speed.to_string());
        d.link_width = Some(width.to_string());
        d.reset_method = Some("pm".to_string());
        self.push(d, numa, true);
    }

    /// One endpoint on bus `bus` below downstream port `port`, using at most `budget` functions.
    fn endpoint(&mut self, domain: u16, bus: u8, port: &str, numa: i32, budget: usize) {
        let kind = self.cycle % 4;
        self.cycle += 1;
        let parent = Some(port.to_string());
        let nic = match kind {
            0 => Some((
                [0x8086, 0x1572, 0x8086, 0x0007],
                [0x8086, 0x154c, 0x8086, 0x0000],
                0x02,
                "i40e",
                "iavf",
                "8.0 GT/s PCIe",
                "8",
            )),
            2 => Some((
                [0x15b3, 0x1017, 0x15b3, 0x0020],
                [0x15b3, 0x1018, 0x15b3, 0x0020],
                0x00,
                "mlx5_core",
                "mlx5_core",
                "8.0 GT/s PCIe",
                "8",
            )),
            _ => None,
        };
        match nic {
            Some((pf_ids, vf_ids, rev, pf_drv, vf_drv, speed, width)) if budget >= 2 => {
                let max_total = usize::from(self.max_vfs) * 2;
                let vfs = (budget - 2).min(max_total);
                let per_pf = [vfs.div_ceil(2), vfs / 2];
                let mut next = 16u16; // first VF routing id: slot 2, function 0
                let mut pfs = Vec::new();
                for (f, &count) in per_pf.iter().enumerate() {
                    let func = u8::try_from(f).expect("two PFs");
                    let mut d = base(
                        bdf(domain, bus, 0, func),
                        parent.clone(),
                        0x020000,
                        pf_ids,
                        rev,
                        Some(pf_drv),
                    );
                    d.link_speed = Some(speed.to_string());
                    d.link_width = Some(width.to_string());
                    d.reset_method = Some("flr bus".to_string());
                    d.sriov_totalvfs = Some(self.max_vfs);
                    d.sriov_numvfs = Some(u16::try_from(count).expect("VF count fits u16"));
                    pfs.push((d.address.clone(), count));
                    self.push(d, numa, true);
                }
                for (pf, count) in pfs {
                    for _ in 0..count {
                        let slot = u8::try_from(next / 8).expect("VFs fit in one bus");
                        let func = u8::try_from(next % 8).expect("function < 8");
                        next += 1;
                        let mut d = base(
                            bdf(domain, bus, slot, func),
                            parent.clone(),
                            0x020000,
                            vf_ids,
                            rev,
                            Some(vf_drv),
                        );
                        d.physfn = Some(pf.clone());
                        d.reset_method = Some("flr".to_string());
                        self.push(d, numa, true);
                    }
                }
            }
            _ if kind == 3 => {
                let mut d = base(
                    bdf(domain, bus, 0, 0),
                    parent,
                    0x010700,
                    [0x1000, 0x0097, 0x15d9, 0x0808],
                    0x02,
                    Some("mpt3sas"),
                );
                d.link_speed = Some("8.0 GT/s PCIe".to_string());
                d.link_width = Some("8".to_string());
                d.reset_method = Some("flr bus".to_string());
                self.push(d, numa, true);
            }
            _ => {
                let mut d = base(
                    bdf(domain, bus, 0, 0),
                    parent,
                    0x010802,
                    [0x144d, 0xa824, 0x144d, 0xa801],
                    0x00,
                    Some("nvme"),
                );
                d.link_speed = Some("16.0 GT/s PCIe".to_string());
                d.link_width = Some("4".to_string());
                d.reset_method = Some("flr bus".to_string());
                self.push(d, numa, true);
            }
        }
    }
}

/// Devices to add to `desc` so that it has `g.functions` PCI functions.
pub(crate) fn server(g: &GenerateDesc, desc: &HostDesc) -> io::Result<Vec<DeviceDesc>> {
    let have = desc.devices.len();
    let remaining = g.functions.checked_sub(have).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "generate.functions = {} but {have} devices are described",
                g.functions
            ),
        )
    })?;
    let next_group = desc
        .devices
        .iter()
        .filter_map(|d| d.iommu_group.as_deref()?.parse::<u64>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let mut gen = Gen {
        out: Vec::new(),
        next_group,
        remaining,
        cycle: 0,
        max_vfs: g.max_vfs_per_pf.clamp(1, 112),
    };
    let rp_ids = [0x2030u16, 0x2031, 0x2032, 0x2033];
    let mut domain = 0u16;
    'outer: loop {
        for (s, &root) in STACKS.iter().enumerate() {
            let numa = if s < STACKS.len() / 2 { 0 } else { 1 };
            let mut bus = root + 1;
            for (p, &rp) in rp_ids.iter().enumerate() {
                if gen.remaining < BRIDGES_PER_PORT * 2 {
                    break 'outer;
                }
                let rp_addr = bdf(domain, root, u8::try_from(p).expect("4 ports"), 0);
                gen.bridge(
                    rp_addr.clone(),
                    None,
                    [0x8086, rp, 0x8086, 0x0000],
                    0x04,
                    numa,
                    ("8.0 GT/s PCIe", "16"),
                );
                let up = bdf(domain, bus, 0, 0);
                gen.bridge(
                    up.clone(),
                    Some(rp_addr),
                    [0x10b5, 0x8747, 0x10b5, 0x8747],
                    0xca,
                    numa,
                    ("8.0 GT/s PCIe", "16"),
                );
                let down_bus = bus + 1;
                let downs: Vec<String> =
                    (0..4u8).map(|k| bdf(domain, down_bus, 8 + k, 0)).collect();
                for d in &downs {
                    gen.bridge(
                        d.clone(),
                        Some(up.clone()),
                        [0x10b5, 0x8747, 0x10b5, 0x8747],
                        0xca,
                        numa,
                        ("8.0 GT/s PCIe", "8"),
                    );
                }
                for (k, d) in downs.iter().enumerate() {
                    let ports_left = downs.len() - k - 1;
                    let budget = gen.remaining - ports_left;
                    let ep_bus = down_bus + 1 + u8::try_from(k).expect("4 ports");
                    gen.endpoint(domain, ep_bus, d, numa, budget);
                }
                bus += 6;
            }
        }
        domain += 1;
    }
    // Uncore filler: Sky Lake-E CHA functions on root bus 0x16, one group per slot.
    let mut k = 0u8;
    while gen.remaining > 0 {
        let slot = 0x0e + k / 8;
        let func = k % 8;
        let own = func == 0;
        let mut d = base(
            bdf(0, 0x16, slot, func),
            None,
            0x088000,
            [0x8086, 0x208d, 0x8086, 0x0000],
            0x04,
            None,
        );
        if !own {
            d.iommu_group = Some((gen.next_group - 1).to_string());
        }
        gen.push(d, 0, own);
        k += 1;
    }
    Ok(gen.out)
}
