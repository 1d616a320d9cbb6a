/* The CLIP BPE merge list (data/clip/merges.txt, 48894 merges after the "#version"
 * line) compiled into the binary, so `ocd` needs no tokenizer files. The assembler
 * resolves the path relative to the directory the compiler runs in: the repository
 * root, as the Makefile does. A NUL byte follows the data. */

__asm__(".pushsection .rodata.ocd_clip_merges,\"a\",@progbits\n"
        ".balign 16\n"
        ".global ocd_clip_merges\n"
        ".type ocd_clip_merges, @object\n"
        "ocd_clip_merges:\n"
        ".incbin \"data/clip/merges.txt\"\n"
        ".global ocd_clip_merges_end\n"
        "ocd_clip_merges_end:\n"
        ".byte 0\n"
        ".size ocd_clip_merges, . - ocd_clip_merges\n"
        ".popsection\n");
