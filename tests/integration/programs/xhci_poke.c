/* xhci-poke COUNT SEED: COUNT random 32-bit writes to the xHCI's registers through its sysfs
 * BAR (resource0; Linux maps it only while no driver holds it): USBCMD, USBSTS, CRCR, CONFIG, every PORTSC,
 * interrupter 0's IMAN and IMOD, the doorbells, and random offsets. Pointers the controller
 * would write through (DCBAAP, ERSTBA, ERDP) are left alone: garbage there lets the device
 * write over the guest's own memory, which no emulator can make safe for the guest. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 1000;
    srandom(argc > 2 ? atoi(argv[2]) : 1);
    int fd = open("/sys/bus/pci/devices/0000:00:14.0/resource0", O_RDWR | O_SYNC);
    if (fd < 0) {
        perror("resource0");
        return 1;
    }
    volatile uint32_t *bar = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (bar == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    static const uint32_t fixed[] = {0x80, 0x84, 0x98, 0xB8, 0x2020, 0x2024, 0x3000};
    for (int i = 0; i < count; i++) {
        uint32_t offset;
        int pick = random() % 10;
        if (pick < 4)
            offset = fixed[random() % (sizeof fixed / sizeof fixed[0])];
        else if (pick < 6)
            offset = 0x480 + 0x10 * (random() % 26);             /* a PORTSC */
        else if (pick < 8)
            offset = 0x3000 + 4 * (random() % 65);               /* a doorbell */
        else
            offset = (random() % 0x10000) & ~3u;
        if (offset >= 0xB0 && offset < 0xB8)                    /* DCBAAP */
            continue;
        if (offset >= 0x2030 && offset < 0x2040)                /* ERSTBA, ERDP */
            continue;
        uint32_t value = random() % 3 ? (uint32_t)random() : (random() % 2 ? 0 : 0xFFFFFFFF);
        bar[offset / 4] = value;
        (void)bar[(random() % 0x10000) / 4];
    }
    printf("poked %d\n", count);
    return 0;
}
