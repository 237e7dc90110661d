/* input-events SECONDS: every input event of every /dev/input/event* device for SECONDS
 * seconds, one line each: "<device name>|<type> <code> <value>" (EV_SYN and EV_MSC left out),
 * the way evtest shows them, and "<device name>|dropped" where the kernel dropped events
 * (SYN_DROPPED: its buffer for this reader overflowed). Prints "ready" once every device is open.
 *
 * It also puts off the kernel's autorepeat of held keys (60 s before the first repeat): on a
 * host busy with other machines a key's release can reach the guest more than the usual
 * 250 ms after its press, and the console would then type the key twice. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVICES 32

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    struct pollfd fds[MAX_DEVICES];
    char names[MAX_DEVICES][128];
    int count = 0;
    DIR *dir = opendir("/dev/input");
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) && count < MAX_DEVICES) {
        char path[300];
        if (strncmp(entry->d_name, "event", 5) != 0)
            continue;
        snprintf(path, sizeof path, "/dev/input/%s", entry->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            continue;
        names[count][0] = 0;
        ioctl(fd, EVIOCGNAME(sizeof names[count]), names[count]);
        unsigned int repeat[2] = {60000, 33};      /* delay, period (ms) */
        ioctl(fd, EVIOCSREP, repeat);              /* fails on devices that do not repeat */
        fds[count].fd = fd;
        fds[count].events = POLLIN;
        count++;
    }
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end) {
        if (poll(fds, count, 200) <= 0)
            continue;
        for (int i = 0; i < count; i++) {
            struct input_event ev;
            if (!(fds[i].revents & POLLIN))
                continue;
            while (read(fds[i].fd, &ev, sizeof ev) == sizeof ev) {
                if (ev.type == EV_SYN && ev.code == SYN_DROPPED)
                    printf("%s|dropped\n", names[i]);   /* the kernel's buffer overflowed */
                if (ev.type == EV_SYN || ev.type == EV_MSC)
                    continue;
                printf("%s|%d %d %d\n", names[i], ev.type, ev.code, ev.value);
            }
        }
        fflush(stdout);
    }
    return 0;
}
