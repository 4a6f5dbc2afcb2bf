// Streaming-store time loops for SSE4.1 CPUs (roundps for floor); compiled with -msse4.1.
#define SPIKEONNX_STREAM_NAMESPACE stream_sse41
#include "stream_loops.inc"
