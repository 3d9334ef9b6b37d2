/* Calls the ultramem C ABI from C: one weighted gather checked against hand-computed values, a
 * bad call checked for its status and message, and every declared function once with null
 * tensors (so each links and reports instead of crashing). Built and run by tests/c_abi.rs;
 * exits 0 when every check holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ultramem.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);                                   \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fprintf(stderr, "\n");                                                                   \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

static DLTensor tensor(void *data, DLDataType dtype, int32_t ndim, int64_t *shape) {
  DLTensor t;
  t.data = data;
  t.device.device_type = kDLCPU;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = NULL;
  t.byte_offset = 0;
  return t;
}

int main(void) {
  const DLDataType u32 = {kDLUInt, 32, 1}, f32 = {kDLFloat, 32, 1};
  CHECK(ultramem_abi_version() == ULTRAMEM_ABI_VERSION, "ABI version %d, header %d",
        ultramem_abi_version(), ULTRAMEM_ABI_VERSION);

  /* T = 2 tokens, M = 2 slots, Cn = 1, a table of N = 3 rows of Dv = 2. */
  uint32_t rows[4] = {2, 0, 1, 1};
  float weights[4] = {0.5f, 2.0f, 1.0f, -1.0f};
  float table[6] = {1, 2, 3, 4, 5, 6};
  float out[4] = {NAN, NAN, NAN, NAN};
  int64_t rows_shape[2] = {2, 2}, w_shape[3] = {2, 2, 1}, t_shape[2] = {3, 2}, o_shape[2] = {2, 2};
  DLTensor r = tensor(rows, u32, 2, rows_shape), w = tensor(weights, f32, 3, w_shape),
           tb = tensor(table, f32, 2, t_shape), o = tensor(out, f32, 2, o_shape);

  int32_t status = ultramem_weighted_gather_forward(&r, &w, &tb, &o, NULL);
  CHECK(status == ULTRAMEM_OK, "gather failed: %d %s", status, ultramem_last_error());
  /* token 0: 0.5*[5,6] + 2*[1,2] = [4.5, 7]; token 1: 1*[3,4] - 1*[3,4] = [0, 0]. */
  const float want[4] = {4.5f, 7.0f, 0.0f, 0.0f};
  for (int i = 0; i < 4; i++) CHECK(out[i] == want[i], "out[%d] = %g, want %g", i, out[i], want[i]);
  printf("weighted_gather from C: [[%g, %g], [%g, %g]]\n", out[0], out[1], out[2], out[3]);

  /* A row past the table: a status and the crate's message, never a crash. */
  rows[3] = 7;
  status = ultramem_weighted_gather_forward(&r, &w, &tb, &o, NULL);
  CHECK(status == ULTRAMEM_ERR_INDEX_OUT_OF_RANGE, "status %d for a bad row", status);
  CHECK(strstr(ultramem_last_error(), "rows") != NULL, "message: %s", ultramem_last_error());
  printf("bad row -> status %d: %s\n", status, ultramem_last_error());
  rows[3] = 1;

  /* An output aliasing an input is refused. */
  DLTensor alias = tensor(weights, f32, 2, o_shape);
  status = ultramem_weighted_gather_forward(&r, &w, &tb, &alias, NULL);
  CHECK(status == ULTRAMEM_ERR_INVALID_ARGUMENT, "status %d for an aliasing output", status);

  /* Every function with null tensors. */
  int32_t null_status[] = {
      ultramem_weighted_gather_forward(NULL, NULL, NULL, NULL, NULL),
      ultramem_weighted_gather_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      ultramem_peer_ffn_forward(NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL),
      ultramem_peer_ffn_backward(NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL,
                                 NULL),
      ultramem_additive_topk_forward(NULL, NULL, 1, 0, NULL, NULL, NULL),
      ultramem_additive_topk_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      ultramem_tucker_topk_forward(NULL, NULL, NULL, NULL, NULL, 1, 0, NULL, NULL, NULL),
      ultramem_tucker_topk_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                    NULL),
      ultramem_tucker_proxy(NULL, NULL, NULL, NULL, NULL),
      ultramem_index_map_forward(NULL, NULL, 1, 0, 1, NULL, NULL),
      ultramem_score_fn_forward(NULL, 0, NULL, NULL),
      ultramem_score_fn_backward(NULL, 0, NULL, NULL, NULL),
  };
  for (unsigned i = 0; i < sizeof null_status / sizeof null_status[0]; i++)
    CHECK(null_status[i] == ULTRAMEM_ERR_INVALID_ARGUMENT, "function %u: status %d for nulls", i,
          null_status[i]);

  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all C ABI checks passed\n");
  return 0;
}
