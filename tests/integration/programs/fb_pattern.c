/*
 * Paint a known picture on /dev/fb0, whatever its mode, through the kernel's fbdev API:
 * the top half is eight colour bars (white, yellow, cyan, green, magenta, red, blue, black at
 * full intensity), the bottom half a grey ramp through every level the mode has, left to
 * right, each level an equal run of columns. The test computes the same picture itself.
 */
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static uint32_t pixel(const struct fb_var_screeninfo *v, uint32_t r, uint32_t g, uint32_t b)
{
    return r << v->red.offset | g << v->green.offset | b << v->blue.offset;
}

int main(void)
{
    struct fb_var_screeninfo v;
    struct fb_fix_screeninfo f;
    int fd = open("/dev/fb0", O_RDWR);

    if (fd < 0 || ioctl(fd, FBIOGET_VSCREENINFO, &v) || ioctl(fd, FBIOGET_FSCREENINFO, &f)) {
        perror("fb0");
        return 1;
    }
    uint8_t *fb = mmap(NULL, f.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fb == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uint32_t max = (1u << v.red.length) - 1, levels = max + 1;
    static const uint8_t bars[8][3] = {{1, 1, 1}, {1, 1, 0}, {0, 1, 1}, {0, 1, 0},
                                      {1, 0, 1}, {1, 0, 0}, {0, 0, 1}, {0, 0, 0}};
    for (uint32_t y = 0; y < v.yres; y++) {
        uint32_t *row = (uint32_t *)(fb + (size_t)y * f.line_length);
        for (uint32_t x = 0; x < v.xres; x++) {
            if (y < v.yres / 2) {
                const uint8_t *c = bars[x * 8 / v.xres];
                row[x] = pixel(&v, c[0] * max, c[1] * max, c[2] * max);
            } else {
                uint32_t level = (uint64_t)x * levels / v.xres;
                row[x] = pixel(&v, level, level, level);
            }
        }
    }
    msync(fb, f.smem_len, MS_SYNC);
    printf("fb_pattern %ux%u %u bits per channel\n", v.xres, v.yres, v.red.length);
    return 0;
}
