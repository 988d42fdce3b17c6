// ONNX Runtime custom-op library for edgeseg's `edgeseg:DenseCRF` node (plugins/dense_crf/CONTRACT.md):
// inputs probs (N, C, H, W) float32 and image (N, H, W, K) float32 in 0..255, string attribute `params`
// (JSON keyword arguments of edgeseg.ops.dense_crf), output refined probs (N, C, H, W). Only the windowed CRF
// (`"window"` in params) has a kernel here: it is plugins/dense_crf's host build (crf_window_host.cpp).
// Entry point: RegisterCustomOps, loaded by SessionOptions.register_custom_ops_library.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crf_window_host.cpp"
#include "ort_abi.h"

namespace {

using ort_abi::slot;
using ort_abi::Slot;

const OrtApi* g_api = nullptr;

OrtStatus* error(const std::string& message) {
    return slot<OrtStatus* (*)(OrtErrorCode, const char*)>(g_api, ort_abi::CreateStatus)(
        ORT_INVALID_ARGUMENT, ("edgeseg:DenseCRF: " + message).c_str());
}

// --- a small JSON reader (numbers, strings, lists, objects, true/false/null) for `params` ---------------------
struct Json {
    enum Kind { Null, Bool, Number, String, List, Object } kind = Null;
    double number = 0;
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> fields;
};

struct JsonReader {
    const char* p;
    std::string problem;

    void space() { while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') ++p; }
    bool fail(const std::string& what) {
        if (problem.empty()) problem = what;
        return false;
    }
    bool string(std::string* out) {
        if (*p != '"') return fail("expected a string");
        for (++p; *p && *p != '"'; ++p) {
            if (*p == '\\' && p[1]) ++p;  // keys and values here are plain ASCII; keep escaped characters as is
            out->push_back(*p);
        }
        if (*p != '"') return fail("unterminated string");
        ++p;
        return true;
    }
    // The items of an object or list after its opening bracket, up to `close`: item() reads one.
    template <class Item>
    bool items(char close, Item item) {
        ++p;
        space();
        if (*p == close) return ++p, true;
        for (;;) {
            if (!item()) return false;
            space();
            if (*p == ',') { ++p; continue; }
            if (*p == close) return ++p, true;
            return fail(std::string("expected ',' or '") + close + "'");
        }
    }
    bool value(Json* out) {
        space();
        if (*p == '{') {
            out->kind = Json::Object;
            return items('}', [&] {
                std::string key;
                space();
                if (!string(&key)) return false;
                space();
                if (*p != ':') return fail("expected ':'");
                ++p;
                return value(&out->fields[key]);
            });
        }
        if (*p == '[') {
            out->kind = Json::List;
            return items(']', [&] {
                out->items.emplace_back();
                return value(&out->items.back());
            });
        }
        if (*p == '"') return out->kind = Json::String, string(&out->text);
        for (const char* word : {"true", "false", "null"}) {
            if (std::strncmp(p, word, std::strlen(word)) == 0) {
                p += std::strlen(word);
                out->kind = word[0] == 'n' ? Json::Null : Json::Bool;
                out->number = word[0] == 't';
                return true;
            }
        }
        char* end = nullptr;
        out->number = std::strtod(p, &end);
        if (end == p) return fail(std::string("unexpected character '") + (*p ? *p : '?') + "'");
        out->kind = Json::Number;
        p = end;
        return true;
    }
};

// --- the node's parameters ------------------------------------------------------------------------------------
struct Params {
    int iterations = 5, window = 0;
    float sxy_gaussian[2] = {3, 3}, sxy_bilateral[2] = {80, 80}, clip = 1e-5f;
    Json srgb, compat_gaussian, compat_bilateral, compat;  // resolved per call (they depend on C and K)
    bool energy = false;
};

std::string describe(const Json& v) {
    switch (v.kind) {
        case Json::Null: return "null";
        case Json::Bool: return v.number ? "true" : "false";
        case Json::Number: { char b[32]; std::snprintf(b, sizeof b, "%g", v.number); return b; }
        case Json::String: return "'" + v.text + "'";
        case Json::List: return "a list of " + std::to_string(v.items.size());
        default: return "an object";
    }
}

bool positive_pair(const Json& v, float out[2]) {
    if (v.kind == Json::Number && v.number > 0) return out[0] = out[1] = (float)v.number, true;
    if (v.kind == Json::List && v.items.size() == 2 && v.items[0].kind == Json::Number &&
        v.items[1].kind == Json::Number && v.items[0].number > 0 && v.items[1].number > 0)
        return out[0] = (float)v.items[0].number, out[1] = (float)v.items[1].number, true;
    return false;
}

std::string parse_params(const std::string& text, Params* out) {
    Json root;
    JsonReader reader{text.empty() ? "{}" : text.c_str(), ""};
    if (!reader.value(&root)) return "params: not valid JSON (" + reader.problem + ")";
    if (root.kind != Json::Object) return "params: got " + describe(root) + ", expected a JSON object";
    root.fields.emplace("srgb", Json{Json::Number, 13});
    root.fields.emplace("compat_gaussian", Json{Json::Number, 3});
    root.fields.emplace("compat_bilateral", Json{Json::Number, 10});
    for (auto& [key, v] : root.fields) {
        const bool integer = v.kind == Json::Number && v.number == std::floor(v.number);
        if (key == "iterations") {
            if (!integer || v.number < 0) return "params.iterations: got " + describe(v) + ", expected an int >= 0";
            out->iterations = (int)v.number;
        } else if (key == "window") {
            if (v.kind == Json::Null)
                return "params.window: got null; only the windowed CRF has an ONNX Runtime kernel (the fully "
                       "connected lattice CRF runs in Python: export with a window, e.g. CRFasRNN(window=7))";
            if (!integer || v.number < 1 || (int)v.number % 2 == 0)
                return "params.window: got " + describe(v) + ", expected an odd int >= 1";
            out->window = (int)v.number;
        } else if (key == "sxy_gaussian" || key == "sxy_bilateral") {
            if (!positive_pair(v, key == "sxy_gaussian" ? out->sxy_gaussian : out->sxy_bilateral))
                return "params." + key + ": got " + describe(v) + ", expected a positive number or a pair (sx, sy)";
        } else if (key == "clip") {
            if (v.kind != Json::Number || !(v.number > 0 && v.number < 1))
                return "params.clip: got " + describe(v) + ", expected a probability floor in (0, 1)";
            out->clip = (float)v.number;
        } else if (key == "unary") {
            if (v.kind != Json::String || (v.text != "probs" && v.text != "energy"))
                return "params.unary: got " + describe(v) + ", expected 'probs' or 'energy'";
            out->energy = v.text == "energy";
        } else if (key == "srgb") {
            out->srgb = v;
        } else if (key == "compat_gaussian") {
            out->compat_gaussian = v;
        } else if (key == "compat_bilateral") {
            out->compat_bilateral = v;
        } else if (key == "compat") {
            out->compat = v;
        } else {
            return "params: unknown key '" + key + "' (expected keyword arguments of edgeseg.ops.dense_crf)";
        }
    }
    if (out->window == 0)
        return "params: no 'window'; only the windowed CRF has an ONNX Runtime kernel (the fully connected "
               "lattice CRF runs in Python: export with a window, e.g. CRFasRNN(window=7))";
    return "";
}

// A (C, C) matrix from a JSON value: a list of C numbers, or a list of C lists of C numbers.
bool matrix(const Json& v, int c, std::vector<double>* out, bool* diagonal) {
    if (v.kind != Json::List || (int)v.items.size() != c) return false;
    out->assign(c * c, 0.0);
    *diagonal = v.items[0].kind == Json::Number;
    for (int i = 0; i < c; ++i) {
        const Json& row = v.items[i];
        if (*diagonal) {
            if (row.kind != Json::Number) return false;
            (*out)[i * c + i] = row.number;
        } else {
            if (row.kind != Json::List || (int)row.items.size() != c) return false;
            for (int j = 0; j < c; ++j) {
                if (row.items[j].kind != Json::Number) return false;
                (*out)[i * c + j] = row.items[j].number;
            }
        }
    }
    return true;
}

// edgeseg.ops.crf.compat_matrix: Potts w -> w*I; (C,) v -> -diag(v); (C, C) M -> -sym(M); with `compat`
// mu given, the weight must be a number and M = w * mu.
std::string compat_matrix(const Json& value, const Json& compat, int c, const char* field, std::vector<float>* g) {
    g->assign(c * c, 0.f);
    std::vector<double> m;
    bool diagonal = false;
    if (compat.kind != Json::Null) {
        if (!matrix(compat, c, &m, &diagonal) || diagonal)
            return "params.compat: got " + describe(compat) + ", expected (" + std::to_string(c) + ", " +
                   std::to_string(c) + ") label compatibility";
        if (value.kind != Json::Number)
            return std::string("params.") + field + ": got " + describe(value) +
                   ", expected a number (a weight) when compat is given";
        for (double& x : m) x *= value.number;
    } else if (value.kind == Json::Number) {
        for (int i = 0; i < c; ++i) (*g)[i * c + i] = (float)value.number;
        return "";
    } else if (!matrix(value, c, &m, &diagonal)) {
        return std::string("params.") + field + ": got " + describe(value) + ", expected a number (Potts), (" +
               std::to_string(c) + ",) or (" + std::to_string(c) + ", " + std::to_string(c) + ")";
    }
    for (int i = 0; i < c; ++i)
        for (int j = 0; j < c; ++j) (*g)[i * c + j] = (float)(diagonal ? -m[i * c + j] : -0.5 * (m[i * c + j] + m[j * c + i]));
    return "";
}

// --- the kernel -----------------------------------------------------------------------------------------------
struct Kernel {
    Params params;
};

OrtStatus* shape_of(const OrtValue* value, std::vector<int64_t>* dims, int* type) {
    OrtTensorTypeAndShapeInfo* info = nullptr;
    if (OrtStatus* s = slot<OrtStatus* (*)(const OrtValue*, OrtTensorTypeAndShapeInfo**)>(
            g_api, ort_abi::GetTensorTypeAndShape)(value, &info))
        return s;
    size_t count = 0;
    OrtStatus* s = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int*)>(g_api, ort_abi::GetTensorElementType)(info, type);
    if (!s) s = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, size_t*)>(g_api, ort_abi::GetDimensionsCount)(info, &count);
    if (!s) {
        dims->resize(count);
        s = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t)>(g_api, ort_abi::GetDimensions)(
            info, dims->data(), count);
    }
    slot<void (*)(OrtTensorTypeAndShapeInfo*)>(g_api, ort_abi::ReleaseTensorTypeAndShapeInfo)(info);
    return s;
}

std::string shape_text(const std::vector<int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
}

OrtStatus* compute(void* kernel_ptr, OrtKernelContext* context) {
    const Params& p = static_cast<Kernel*>(kernel_ptr)->params;
    const OrtValue* inputs[2];
    for (size_t i = 0; i < 2; ++i)
        if (OrtStatus* s = slot<OrtStatus* (*)(const OrtKernelContext*, size_t, const OrtValue**)>(
                g_api, ort_abi::KernelContext_GetInput)(context, i, &inputs[i]))
            return s;
    std::vector<int64_t> pd, id;
    int ptype = 0, itype = 0;
    if (OrtStatus* s = shape_of(inputs[0], &pd, &ptype)) return s;
    if (OrtStatus* s = shape_of(inputs[1], &id, &itype)) return s;
    if (ptype != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || itype != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        return error("probs, image: expected float32 tensors");
    if (pd.size() != 4 || pd[1] < 2 || pd[1] > CRF_WINDOW_MAX_CLASSES)
        return error("probs: got shape " + shape_text(pd) + ", expected (N, C, H, W) with 2 <= C <= " +
                     std::to_string(CRF_WINDOW_MAX_CLASSES));
    if (id.size() != 4 || id[0] != pd[0] || id[1] != pd[2] || id[2] != pd[3] || id[3] < 1 ||
        id[3] > CRF_WINDOW_MAX_CHANNELS)
        return error("image: got shape " + shape_text(id) + ", expected (" + std::to_string(pd[0]) + ", " +
                     std::to_string(pd[2]) + ", " + std::to_string(pd[3]) + ", K) with 1 <= K <= " +
                     std::to_string(CRF_WINDOW_MAX_CHANNELS) + " (NHWC, values 0..255)");
    const int n = (int)pd[0], c = (int)pd[1], h = (int)pd[2], w = (int)pd[3], k = (int)id[3];
    std::vector<float> widths = {1.f / p.sxy_gaussian[0], 1.f / p.sxy_gaussian[1], 1.f / p.sxy_bilateral[0],
                                 1.f / p.sxy_bilateral[1]};
    if (p.srgb.kind == Json::Number && p.srgb.number > 0) {
        widths.insert(widths.end(), k, (float)(1.0 / p.srgb.number));
    } else if (p.srgb.kind == Json::List && (int)p.srgb.items.size() == k) {
        for (const Json& s : p.srgb.items) {
            if (s.kind != Json::Number || !(s.number > 0)) break;
            widths.push_back((float)(1.0 / s.number));
        }
    }
    if ((int)widths.size() != 4 + k)
        return error("params.srgb: got " + describe(p.srgb) + ", expected a positive number or one per image channel (" +
                     std::to_string(k) + ")");
    std::vector<float> gg, gb;
    std::string problem = compat_matrix(p.compat_gaussian, p.compat, c, "compat_gaussian", &gg);
    if (problem.empty()) problem = compat_matrix(p.compat_bilateral, p.compat, c, "compat_bilateral", &gb);
    if (!problem.empty()) return error(problem);

    OrtValue* output = nullptr;
    if (OrtStatus* s = slot<OrtStatus* (*)(OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**)>(
            g_api, ort_abi::KernelContext_GetOutput)(context, 0, pd.data(), pd.size(), &output))
        return s;
    void *probs_data = nullptr, *image_data = nullptr, *out_data = nullptr;
    auto data = slot<OrtStatus* (*)(OrtValue*, void**)>(g_api, ort_abi::GetTensorMutableData);
    if (OrtStatus* s = data(const_cast<OrtValue*>(inputs[0]), &probs_data)) return s;
    if (OrtStatus* s = data(const_cast<OrtValue*>(inputs[1]), &image_data)) return s;
    if (OrtStatus* s = data(output, &out_data)) return s;

    const size_t hw = (size_t)h * w;
    std::vector<float> unary(c * hw);
    std::vector<unsigned char> pixels(hw * k);
    for (int b = 0; b < n; ++b) {
        const float* probs = static_cast<const float*>(probs_data) + b * c * hw;
        const float* image = static_cast<const float*>(image_data) + b * hw * k;
        for (size_t i = 0; i < c * hw; ++i)  // edgeseg.ops.crf.unary_from_probs: -log(clip(p, clip, 1))
            unary[i] = p.energy ? probs[i] : -std::log(std::fmin(std::fmax(probs[i], p.clip), 1.f));
        for (size_t i = 0; i < hw * k; ++i)  // the frame as bytes, rounded (as run_after_engine does)
            pixels[i] = (unsigned char)std::fmin(std::fmax(std::nearbyint(image[i]), 0.f), 255.f);
        crf_window_inference_host(unary.data(), pixels.data(), gg.data(), gb.data(),
                                  static_cast<float*>(out_data) + b * c * hw, h, w, k, c, p.window / 2,
                                  widths.data(), p.iterations);
    }
    return nullptr;
}

OrtStatus* create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info, void** out) {
    auto get = slot<OrtStatus* (*)(const OrtKernelInfo*, const char*, char*, size_t*)>(
        api, ort_abi::KernelInfoGetAttribute_string);
    std::string text;
    size_t size = 0;
    if (OrtStatus* s = get(info, "params", nullptr, &size)) {
        slot<void (*)(OrtStatus*)>(api, ort_abi::ReleaseStatus)(s);  // no attribute: dense_crf's defaults
    } else {
        text.resize(size);
        if (OrtStatus* s2 = get(info, "params", &text[0], &size)) return s2;
        text.resize(std::strlen(text.c_str()));
    }
    auto kernel = std::make_unique<Kernel>();
    std::string problem = parse_params(text, &kernel->params);
    if (!problem.empty()) return error(problem);
    *out = kernel.release();
    return nullptr;
}

const char* op_name(const OrtCustomOp*) { return "DenseCRF"; }
const char* op_provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
int float_type(const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
size_t two(const OrtCustomOp*) { return 2; }
size_t one(const OrtCustomOp*) { return 1; }
int required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
int default_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int arity_one(const OrtCustomOp*) { return 1; }
void destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }

OrtCustomOp make_op() {
    OrtCustomOp op{};
    op.version = ort_abi::kApiVersion;
    op.GetName = op_name;
    op.GetExecutionProviderType = op_provider;
    op.GetInputType = float_type;
    op.GetInputTypeCount = two;
    op.GetOutputType = float_type;
    op.GetOutputTypeCount = one;
    op.KernelDestroy = destroy;
    op.GetInputCharacteristic = required;
    op.GetOutputCharacteristic = required;
    op.GetInputMemoryType = default_memory;
    op.GetVariadicInputMinArity = arity_one;
    op.GetVariadicInputHomogeneity = arity_one;
    op.GetVariadicOutputMinArity = arity_one;
    op.GetVariadicOutputHomogeneity = arity_one;
    op.CreateKernelV2 = create_kernel;
    op.KernelComputeV2 = compute;
    return op;
}

OrtCustomOp g_op = make_op();

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                                const OrtApiBase* base) {
    const OrtApi* api = base->GetApi(ort_abi::kApiVersion);
    if (api == nullptr) {  // an ONNX Runtime older than 1.16: report through the frozen version-1 table
        const OrtApi* v1 = base->GetApi(1);
        return slot<OrtStatus* (*)(OrtErrorCode, const char*)>(v1, ort_abi::CreateStatus)(
            ORT_FAIL, "edgeseg:DenseCRF: this custom-op library needs ONNX Runtime >= 1.16 (C API version 16)");
    }
    g_api = api;
    OrtCustomOpDomain* domain = nullptr;
    if (OrtStatus* s = slot<OrtStatus* (*)(const char*, OrtCustomOpDomain**)>(api, ort_abi::CreateCustomOpDomain)(
            "edgeseg", &domain))
        return s;
    if (OrtStatus* s = slot<OrtStatus* (*)(OrtCustomOpDomain*, const OrtCustomOp*)>(api, ort_abi::CustomOpDomain_Add)(
            domain, &g_op))
        return s;
    // The domain lives as long as the process (sessions keep pointing at it); ONNX Runtime does not free it.
    return slot<OrtStatus* (*)(OrtSessionOptions*, OrtCustomOpDomain*)>(api, ort_abi::AddCustomOpDomain)(options,
                                                                                                       domain);
}
