// helpers.wgsl - the functions every WGSL kernel module shares.
//
// build.rs appends this file to each shaders/<op>.wgsl before validating it with naga and
// embedding it (WGSL declarations may come in any order, so each kernel file keeps its own line
// numbers). The PTX counterparts are in kernels/helpers.ptx.
//
// Tables of every dtype are bound as array<u32>: f32 one element per word, f16 and bf16 two per
// word (element 2j in the low half). f16 is widened by bit manipulation, so no adapter feature
// (shader-f16) is needed and every adapter takes every dtype.

// IEEE binary16 bits (the low 16 bits of h) to f32, exactly.
fn ultramem_f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if exponent == 0u {
        // Zero or subnormal: mantissa · 2^-24, exact in f32.
        let v = f32(mantissa) * 5.9604644775390625e-8;
        return select(v, -v, sign != 0u);
    }
    if exponent == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u));
    }
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// The index of the u32 word that holds element i of a table of `dtype` (0 f32, 1 f16, 2 bf16).
fn ultramem_table_word(i: u32, dtype: u32) -> u32 {
    return select(i >> 1u, i, dtype == 0u);
}

// Element i of a table of `dtype` as f32, from `word`, the word that holds it.
fn ultramem_table_element(word: u32, i: u32, dtype: u32) -> f32 {
    switch dtype {
        case 0u: {
            return bitcast<f32>(word);
        }
        case 1u: {
            return ultramem_f16_to_f32(word >> ((i & 1u) * 16u));
        }
        default: {
            // bf16 is the high half of an f32.
            return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
        }
    }
}
