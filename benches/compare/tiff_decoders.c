/* Decodes every tile of a TIFF's first page with libtiff (memory-mapped, as
 * Tessera reads its sources), best of three runs; one half of
 * benches/compare/tiff_decoders.sh (the tiff crate is examples/tiff_chunks.rs). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <tiffio.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tiff_decoders FILE.tif\n");
        return 2;
    }
    double best = 1e18;
    unsigned long tiles = 0, sum = 0;
    for (int run = 0; run < 3; run++) {
        TIFF *t = TIFFOpen(argv[1], "r");
        if (!t) return 1;
        tmsize_t size = TIFFTileSize(t);
        unsigned char *buf = malloc(size);
        tiles = TIFFNumberOfTiles(t);
        double t0 = now_ms();
        for (ttile_t i = 0; i < tiles; i++) {
            if (TIFFReadEncodedTile(t, i, buf, size) < 0) return 1;
            sum += buf[0];
        }
        double ms = now_ms() - t0;
        if (ms < best) best = ms;
        free(buf);
        TIFFClose(t);
    }
    printf("libtiff: %lu tiles, best %.1f ms (checksum %lu)\n", tiles, best, sum);
    return 0;
}
