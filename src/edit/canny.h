/* In-tree Canny edge detector, bit-exact with OpenCV 4.6 cv2.Canny(img, low, high) (aperture 3,
 * L1 gradient), the ControlNet "canny" annotator (lllyasviel's annotator/canny, controlnet_aux's
 * CannyDetector), as written out in the fixtures README "Canny":
 *   1. per channel 3x3 Sobel in integers, replicated borders;
 *   2. mag = |dx| + |dy|; multi-channel images take, per pixel, the channel with the largest mag
 *      (ties: the lowest channel);
 *   3. non-maximum suppression (OpenCV's integer tan(22.5) test) of pixels with mag > low;
 *   4. hysteresis: kept pixels with mag > high and every kept pixel 8-connected to them;
 *   5. 255 / 0.
 * The annotator runs on the 3-channel RGB frame (not on grey): an isoluminant colour boundary is
 * an edge. Buffers are row-major; colour images interleaved [h, w, ch]. */
#ifndef OCD_EDIT_CANNY_H
#define OCD_EDIT_CANNY_H

#include <stdint.h>

#define CANNY_LOW 100    /* ControlNet / ControlVideo defaults */
#define CANNY_HIGH 200

/* edges [h, w] = Canny(img [h, w, channels]), channels 1..4. Thresholds are swapped when
 * low > high, as OpenCV does. Returns 0, or -1 (bad size / out of memory). */
int canny_u8(const uint8_t *img, int w, int h, int channels, int low, int high, uint8_t *edges);
/* OpenCV's 8-bit COLOR_RGB2GRAY: (9798 R + 19235 G + 3735 B + 16384) >> 15. */
void canny_rgb_to_gray(const uint8_t *rgb /* [h, w, 3] */, int w, int h, uint8_t *gray /* [h, w] */);
/* The ControlNet condition of one RGB frame: edges (100, 200) replicated to 3 channels, / 255:
 * cond [3, h, w] with values 0 or 1. */
int canny_condition(const uint8_t *rgb /* [h, w, 3] */, int w, int h, float *cond /* [3, h, w] */);

#endif
