/* Guest VFIO opener for the QEMU lab: prove a group is usable the way a VMM uses it.
 *
 *   vfio-open GROUP BDF [BDF...]
 *
 * Opens /dev/vfio/vfio (API version, TYPE1), opens /dev/vfio/GROUP (GET_STATUS: viable?),
 * SET_CONTAINER, SET_IOMMU(TYPE1), MAP_DMA of one page, then per BDF GET_DEVICE_FD,
 * DEVICE_GET_INFO and vendor:device read through the config region.
 * Prints one greppable line per step result:
 *   VFIO_CONTAINER api=<n> type1=<0|1>
 *   VFIO_GROUP <group> viable=<0|1>
 *   VFIO_MAP_DMA ok|fail <errno>
 *   VFIO_OPEN_OK <bdf> id=<vvvv:dddd> regions=<n> irqs=<n> reset=<0|1>
 *   VFIO_OPEN_FAIL <bdf|group> <step> <errno name>
 * Exit 0 when every BDF opened, 1 otherwise. Built with gcc -O2 -static.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int fail(const char *who, const char *step)
{
	printf("VFIO_OPEN_FAIL %s %s %s\n", who, step, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: vfio-open GROUP BDF [BDF...]\n");
		return 2;
	}
	const char *grp = argv[1];
	char path[64];
	int container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail(grp, "open-container");
	int api = ioctl(container, VFIO_GET_API_VERSION);
	int type1 = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1;
	printf("VFIO_CONTAINER api=%d type1=%d\n", api, type1);

	snprintf(path, sizeof path, "/dev/vfio/%s", grp);
	int group = open(path, O_RDWR);
	if (group < 0)
		return fail(grp, "open-group");
	struct vfio_group_status st = { .argsz = sizeof st };
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &st) < 0)
		return fail(grp, "GROUP_GET_STATUS");
	int viable = !!(st.flags & VFIO_GROUP_FLAGS_VIABLE);
	printf("VFIO_GROUP %s viable=%d\n", grp, viable);
	if (!viable) {
		errno = EBUSY;
		return fail(grp, "not-viable");
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0)
		return fail(grp, "GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		return fail(grp, "SET_IOMMU");

	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof map,
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)page,
		.iova = 0x100000,
		.size = 4096,
	};
	if (page == MAP_FAILED || ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0)
		printf("VFIO_MAP_DMA fail %s\n", strerror(errno));
	else
		printf("VFIO_MAP_DMA ok iova=0x%llx size=4096\n", (unsigned long long)map.iova);

	int rc = 0;
	for (int i = 2; i < argc; i++) {
		const char *bdf = argv[i];
		int dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
		if (dev < 0) {
			rc |= fail(bdf, "GROUP_GET_DEVICE_FD");
			continue;
		}
		struct vfio_device_info info = { .argsz = sizeof info };
		if (ioctl(dev, VFIO_DEVICE_GET_INFO, &info) < 0) {
			rc |= fail(bdf, "DEVICE_GET_INFO");
			close(dev);
			continue;
		}
		struct vfio_region_info reg = { .argsz = sizeof reg, .index = VFIO_PCI_CONFIG_REGION_INDEX };
		uint16_t id[2] = { 0, 0 };
		if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &reg) < 0 ||
		    pread(dev, id, sizeof id, (off_t)reg.offset) != (ssize_t)sizeof id) {
			rc |= fail(bdf, "config-read");
			close(dev);
			continue;
		}
		printf("VFIO_OPEN_OK %s id=%04x:%04x regions=%u irqs=%u reset=%d config=%llu\n", bdf, id[0],
		       id[1], info.num_regions, info.num_irqs, !!(info.flags & VFIO_DEVICE_FLAGS_RESET),
		       (unsigned long long)reg.size);
		close(dev);
	}
	close(group);
	close(container);
	return rc;
}
