// opencv-bench: OpenCV's side of bench/compare.sh for single-channel shapes (an anchor, not part
// of convd: built only when Debian's libopencv-dev is installed, see bench/packages.txt).
//
//   opencv-bench filter2d --input 1,1,H,W --kernel 1,1,kh,kw [--padding P] [--threads T]
//                         [--repeats R]
//
// Times cv::filter2D (a correlation, like convd's corr2d) with cv::setNumThreads(T) on the
// inputs every implementation of compare.sh shares (bench/fill.h), and prints one JSON line
// with the keys of convd-bench --json (impl "opencv") and the check sums of the output.
//
// Valid correlation without a copy: with padding 0 the source is the top-left oh x ow view of
// the image and the anchor is (0, 0), so OpenCV reads the pixels beyond the view from the
// parent image (its documented behaviour for views without BORDER_ISOLATED): every output pixel
// is computed from real input, none from a border. With padding P the image is copied once,
// untimed, into a zero frame P wide, and the same view is taken of the framed image.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fill.h"

namespace {

bool parse_dims(const char *s, long long out[4]) {
    char tail;
    if (std::sscanf(s, "%lld,%lld,%lld,%lld%c", &out[0], &out[1], &out[2], &out[3], &tail) != 4)
        return false;
    return *std::min_element(out, out + 4) >= 1;
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

} // namespace

int main(int argc, char **argv) {
    long long in[4] = {0}, ker[4] = {0}, pad = 0;
    int threads = 1, repeats = 0;
    bool ok = argc >= 2 && std::strcmp(argv[1], "filter2d") == 0 && argc % 2 == 0;
    bool have_in = false, have_ker = false;
    for (int q = 2; ok && q + 1 < argc; q += 2) {
        const char *a = argv[q], *v = argv[q + 1];
        if (std::strcmp(a, "--input") == 0)
            have_in = parse_dims(v, in);
        else if (std::strcmp(a, "--kernel") == 0)
            have_ker = parse_dims(v, ker);
        else if (std::strcmp(a, "--padding") == 0)
            pad = std::atoll(v);
        else if (std::strcmp(a, "--threads") == 0)
            threads = std::atoi(v);
        else if (std::strcmp(a, "--repeats") == 0)
            repeats = std::atoi(v);
        else
            ok = false;
    }
    // filter2D is single-channel here: one image, one input and one output channel.
    if (!ok || !have_in || !have_ker || in[0] != 1 || in[1] != 1 || ker[0] != 1 || ker[1] != 1 ||
        pad < 0 || threads < 1) {
        std::fprintf(stderr, "usage: opencv-bench filter2d --input 1,1,H,W --kernel 1,1,kh,kw "
                             "[--padding P] [--threads T] [--repeats R]\n");
        return 2;
    }
    cv::setNumThreads(threads);
    const int h = (int)in[2], w = (int)in[3], kh = (int)ker[2], kw = (int)ker[3];
    const int oh = h + 2 * (int)pad - kh + 1, ow = w + 2 * (int)pad - kw + 1;
    if (oh < 1 || ow < 1) {
        std::fprintf(stderr, "opencv-bench: kernel larger than the padded input\n");
        return 2;
    }
    cv::Mat img(h, w, CV_32F), k(kh, kw, CV_32F);
    cv_bench_fill_n(img.ptr<float>(), (uint64_t)h * w, CV_BENCH_SEED_X);
    cv_bench_fill_n(k.ptr<float>(), (uint64_t)kh * kw, CV_BENCH_SEED_K);
    cv::Mat framed = img;
    if (pad > 0)
        cv::copyMakeBorder(img, framed, (int)pad, (int)pad, (int)pad, (int)pad, cv::BORDER_CONSTANT,
                           cv::Scalar(0));
    const cv::Mat src = framed(cv::Rect(0, 0, ow, oh));
    cv::Mat dst(oh, ow, CV_32F);
    std::vector<double> t;
    const double start = now_ms();
    for (int rep = -2; (int)t.size() < 200; rep++) {
        const double t0 = now_ms();
        cv::filter2D(src, dst, CV_32F, k, cv::Point(0, 0), 0.0, cv::BORDER_CONSTANT);
        const double t1 = now_ms();
        if (rep < 0)
            continue;
        t.push_back(t1 - t0);
        if (repeats > 0 ? (int)t.size() >= repeats : (t.size() >= 5 && t1 - start >= 500.0))
            break;
    }
    std::sort(t.begin(), t.end());
    const size_t n = t.size();
    const double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    double check[3];
    if (!dst.isContinuous()) {
        std::fprintf(stderr, "opencv-bench: output not continuous\n");
        return 2;
    }
    cv_bench_check(dst.ptr<float>(), (uint64_t)oh * ow, check);
    const double flops = 2.0 * oh * ow * kh * kw;
    std::printf("{\"bench\":\"corr2d\",\"impl\":\"opencv\",\"opencv\":\"%s\",\"input\":[1,1,%d,%d],"
                "\"kernel\":[1,1,%d,%d],\"padding\":%lld,\"threads\":%d,\"mode\":\"fwd\","
                "\"repeats\":%zu,\"median_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f,"
                "\"gflops\":%.2f,\"check\":[%.9g,%.9g,%.9g]}\n",
                CV_VERSION, h, w, kh, kw, pad, threads, n, med, t[0], t[n - 1], flops / med * 1e-6,
                check[0], check[1], check[2]);
    return 0;
}
