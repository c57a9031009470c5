/* envexec VAR=VALUE... -- PROGRAM ARGS...
 *
 * Executes PROGRAM with exactly the listed environment entries, in order,
 * duplicates included: a shell or std::process::Command would merge two
 * KAWRAP_PROFILE entries into one, a hostile parent process need not. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int split = 1;
    while (split < argc && strcmp(argv[split], "--") != 0)
        split++;
    if (split + 1 >= argc) {
        fprintf(stderr, "usage: envexec VAR=VALUE... -- PROGRAM ARGS...\n");
        return 2;
    }
    argv[split] = NULL; /* argv[1..split) becomes the environment */
    execve(argv[split + 1], &argv[split + 1], &argv[1]);
    perror("execve");
    return 127;
}
