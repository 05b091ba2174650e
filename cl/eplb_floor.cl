/* The trivial kernel of the round-trip floor the benchmark measures: it
 * touches the input once and the output once, no more. */
__kernel void eplb_floor(__global const float *in, __global int *out,
                         uint n_in, uint n_out)
{
    size_t i = get_global_id(0);
    if (i < n_out)
        out[i] = (i < n_in) ? (int)in[i] : 0;
}
