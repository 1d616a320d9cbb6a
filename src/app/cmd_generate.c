/* ocd generate / ocd reconstruct: single images (filled in with the samplers). */
#include "app/app.h"
#include "base/error.h"

int cmd_generate(int argc, char **argv) {
    (void)argc; (void)argv;
    return ocd_fail("generate: not built yet");
}

int cmd_reconstruct(int argc, char **argv) {
    (void)argc; (void)argv;
    return ocd_fail("reconstruct: not built yet");
}
