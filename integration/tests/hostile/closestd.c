/* closestd FDS PROGRAM ARGS...
 *
 * Executes PROGRAM with the descriptors named by the digits in FDS (any of
 * 0, 1, 2) closed, as a careless daemon launcher or `prog <&- >&- 2>&-`
 * does: the program's first files and sockets then get those numbers. */
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    for (const char *fd = argv[1]; *fd; fd++)
        if (*fd >= '0' && *fd <= '2')
            close(*fd - '0');
    execv(argv[2], &argv[2]);
    return 127;
}
