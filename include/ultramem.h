/*
 * ultramem.h: the C ABI of the ultramem crate (cargo feature `abi`, on by default), version 3
 * (CHANGELOG.md lists what each version changed).
 *
 * Link with -lultramem (target/<profile>/libultramem.so, built by `cargo build`).
 *
 * Conventions (the crate docs of `ultramem::abi` say the same):
 *  - Tensors are DLPack DLTensor descriptors, row-major contiguous (strides NULL or the
 *    contiguous ones; a size-1 dimension may have any stride), aligned to their element size.
 *    Shapes are those of the Rust API: T tokens, H heads, M slots, Cn cores, N table rows, ...
 *  - Indices are int32, uint32 or int64, on the host and on CUDA (where int64 is narrowed to
 *    the kernels' 32 bits on the device, each value checked); a negative index is
 *    ULTRAMEM_ERR_INDEX_OUT_OF_RANGE naming it, and an int32 index output refuses values of
 *    2^31 and more. Values are float16, bfloat16, float32 or float64. Outputs are
 *    allocated by the caller, in any float dtype: results are computed in double precision and
 *    rounded once to it. An output must not overlap any other tensor of the call.
 *  - Host tensors (kDLCPU, kDLCUDAHost) run the crate's CPU reference. CUDA tensors (kDLCUDA,
 *    all on one device, in its primary context) run the crate's PTX kernels over the caller's
 *    memory, ordered after the work queued on `stream` (a CUstream; NULL is the legacy default
 *    stream) and before the work queued on it next; inputs are not copied, results are copied
 *    into the outputs. On CUDA, small operands and outputs are float32, tables float32, float16
 *    or bfloat16; each call waits for its kernels' status (bad indices are reported), so it
 *    cannot be captured in a CUDA graph yet. `stream` is ignored for host tensors.
 *  - Every function returns ULTRAMEM_OK (0) or an ULTRAMEM_ERR_* code and never unwinds.
 *    ultramem_last_error() is the message of the calling thread's last failure; the pointer
 *    stays valid until that thread's next ultramem call. Outputs are unspecified after a failure.
 *  - Every pointer is NULL (an error, except `shuffle`) or valid for the whole call, and no
 *    other thread writes the inputs or touches the outputs during it.
 */
#ifndef ULTRAMEM_H
#define ULTRAMEM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ULTRAMEM_ABI_VERSION 3

#define ULTRAMEM_OK 0
#define ULTRAMEM_ERR_SHAPE 1              /* a shape, or the sizes it names, is wrong */
#define ULTRAMEM_ERR_INVALID_ARGUMENT 2   /* null, dtype, device, stride, alignment, aliasing, k */
#define ULTRAMEM_ERR_INDEX_OUT_OF_RANGE 3 /* an index past its table */
#define ULTRAMEM_ERR_NON_FINITE 4         /* NaN or infinity where finite values are needed */
#define ULTRAMEM_ERR_UNSUPPORTED 5        /* valid but not supported here (dtype on GPU, no driver) */
#define ULTRAMEM_ERR_BACKEND 6            /* the GPU runtime failed */
#define ULTRAMEM_ERR_INTERNAL 7           /* a bug in ultramem: please report the message */
#define ULTRAMEM_ERR_OUT_OF_MEMORY 8      /* a host allocation failed; nothing was written (v2) */

#ifndef DLPACK_VERSION
/* DLPack's DLTensor (the layout is the same in DLPack 0.8 and 1.x). A program that includes
 * dlpack.h first uses its definitions instead. */
typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 } DLDeviceType;
typedef struct {
  int32_t device_type; /* a DLDeviceType */
  int32_t device_id;
} DLDevice;
typedef enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4 } DLDataTypeCode;
typedef struct {
  uint8_t code; /* a DLDataTypeCode */
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides; /* NULL: row-major contiguous */
  uint64_t byte_offset;
} DLTensor;
#endif

/* The ABI version the library implements (ULTRAMEM_ABI_VERSION when they match). */
int32_t ultramem_abi_version(void);
/* The message of the calling thread's last failure ("" after a success). */
const char *ultramem_last_error(void);

/* Weighted gather: out[T,Dv] = sum_k weights[t,k,c] * table[rows[t,k], slice c].
 * rows[T,M] int, weights[T,M,Cn], table[N,Dv] (Dv divisible by Cn). */
int32_t ultramem_weighted_gather_forward(const DLTensor *rows, const DLTensor *weights,
                                         const DLTensor *table, DLTensor *out, void *stream);
/* dweights[T,M,Cn], dtable[N,Dv] (the whole table: zero where no slot read) from dout[T,Dv]. */
int32_t ultramem_weighted_gather_backward(const DLTensor *rows, const DLTensor *weights,
                                          const DLTensor *table, const DLTensor *dout,
                                          DLTensor *dweights, DLTensor *dtable, void *stream);

/* PEER per-slot FFN: out[T,Dv] = sum_k scores[t,k,c] * act(<down[r], z[t]>) * up[r, slice c],
 * r = rows[t,k]. rows[T,M], scores[T,M,Cn], z[T,Dp], down[N,Dp], up[N,Dv] (one dtype).
 * activation: 0 identity, 1 relu, 2 gelu (erf), 3 silu. */
int32_t ultramem_peer_ffn_forward(const DLTensor *rows, const DLTensor *scores, const DLTensor *z,
                                  const DLTensor *down, const DLTensor *up, int32_t activation,
                                  DLTensor *out, void *stream);
/* dz[T,Dp], dscores[T,M,Cn], ddown[N,Dp], dup[N,Dv] from dout[T,Dv]. */
int32_t ultramem_peer_ffn_backward(const DLTensor *rows, const DLTensor *scores, const DLTensor *z,
                                   const DLTensor *down, const DLTensor *up, int32_t activation,
                                   const DLTensor *dout, DLTensor *dz, DLTensor *dscores,
                                   DLTensor *ddown, DLTensor *dup, void *stream);

/* Additive product-key top-k: idx[T,H,k] (flat i*n+j, best first, ties to the lower index) and
 * score[T,H,k] from q[T,H,Dk] (finite) and keys[H,2,n,Dk/2]. k1 <= 0: k1 = k. */
int32_t ultramem_additive_topk_forward(const DLTensor *q, const DLTensor *keys, int64_t k,
                                       int64_t k1, DLTensor *idx, DLTensor *score, void *stream);
/* dq[T,H,Dk], dkeys[H,2,n,Dk/2] from the forward's idx and dscore[T,H,k]. */
int32_t ultramem_additive_topk_backward(const DLTensor *q, const DLTensor *keys,
                                        const DLTensor *idx, const DLTensor *dscore, DLTensor *dq,
                                        DLTensor *dkeys, void *stream);

/* Tucker product-key top-k: idx[T,H,m] and per-core score[T,H,m,Cn] from q[T,H,2,R,Dk],
 * keys[H,2,R,n,Dk], cores[H,Cn,R,R] and the rank-1 proxy u[H,R], v[H,R].
 * k1 <= 0: the default stage-1 width. */
int32_t ultramem_tucker_topk_forward(const DLTensor *q, const DLTensor *keys,
                                     const DLTensor *cores, const DLTensor *u, const DLTensor *v,
                                     int64_t m, int64_t k1, DLTensor *idx, DLTensor *score,
                                     void *stream);
/* dq, dkeys, dcores (shapes of q, keys, cores) from the forward's idx and dscore[T,H,m,Cn]. */
int32_t ultramem_tucker_topk_backward(const DLTensor *q, const DLTensor *keys,
                                      const DLTensor *cores, const DLTensor *u, const DLTensor *v,
                                      const DLTensor *idx, const DLTensor *dscore, DLTensor *dq,
                                      DLTensor *dkeys, DLTensor *dcores, void *stream);

/* The rank-1 Tucker proxy u[H,R], v[H,R] from cores[H,Cn,R,R]: the top singular pair of each
 * head's sum of cores, signed closest to prev_u, prev_v when both are given (both may be NULL).
 * A host computation, once per optimiser step. */
int32_t ultramem_tucker_proxy(const DLTensor *cores, const DLTensor *prev_u, const DLTensor *prev_v,
                              DLTensor *u, DLTensor *v);

/* Index map: out = (nu' mod rows_per_layer + offset) mod total_rows, nu' = shuffle[nu] when
 * shuffle (rank 1) is not NULL, else nu. out has the shape of idx. */
int32_t ultramem_index_map_forward(const DLTensor *idx, const DLTensor *shuffle,
                                   uint64_t rows_per_layer, uint64_t offset, uint64_t total_rows,
                                   DLTensor *out, void *stream);

/* Score function on score[T,H,k] or [T,H,k,Cn]: 0 raw, 1 softmax over k, 2 relu, 3 sigmoid. */
int32_t ultramem_score_fn_forward(const DLTensor *score, int32_t func, DLTensor *out,
                                  void *stream);
int32_t ultramem_score_fn_backward(const DLTensor *score, int32_t func, const DLTensor *dout,
                                   DLTensor *dscore, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ULTRAMEM_H */
