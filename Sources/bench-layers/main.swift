// Times each layer's forward and backward on a training batch (scripts/bench-layers), so
// optimisation starts from where the time goes rather than from a guess.
import DistributedTraining
import Engine
import Foundation

func usage() -> Never {
    FileHandle.standardError.write("usage: bench-layers [--model SPEC] [--batch-size B] [--chunk-size C] [--threads T] [--steps N]\n".data(using: .utf8)!)
    exit(64)
}

var model = "seed-cnn", batch = 64, chunk = 8, threads = 1, steps = 200
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--model": model = value
    case "--batch-size": batch = Int(value) ?? 0
    case "--chunk-size": chunk = Int(value) ?? 0
    case "--threads": threads = Int(value) ?? 0
    case "--steps": steps = Int(value) ?? 0
    default: usage()
    }
}
guard batch > 0, chunk > 0, threads > 0, steps > 0 else { usage() }

let network = try Network(spec: try ModelSpec(model), inputShape: [1, 28, 28], classes: 10)
var initialParameters: [Float] = [], initialBuffers: [Float] = []
network.layout.initialize(parameters: &initialParameters, buffers: &initialBuffers, seed: 1)
let chunks = (batch + chunk - 1) / chunk
var chunkGradients = [Float](repeating: 0, count: chunks * network.parameterCount)
let activations = Activations(network: network, capacity: batch)
let rng = CounterRNG(seed: 2, stream: "bench-layers")
for i in 0..<(batch * 784) { activations.input[i] = rng.unitFloat(UInt64(i)) }
let labels = (0..<batch).map { UInt8($0 % 10) }
var chunkLoss = [Float](repeating: 0, count: chunks), chunkCorrect = [Int64](repeating: 0, count: chunks)

let layerCount = network.layers.count
var forwardSeconds = [Double](repeating: 0, count: layerCount)
var backwardSeconds = [Double](repeating: 0, count: layerCount)
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

try initialParameters.withUnsafeMutableBufferPointer { parameters in
    try initialBuffers.withUnsafeMutableBufferPointer { buffers in
        try chunkGradients.withUnsafeMutableBufferPointer { gradients in
            let pass = Pass(sampleCount: batch, chunkSize: chunk, globalSampleCount: batch, training: true,
                            parameters: parameters.baseAddress!, buffers: buffers.baseAddress! ,
                            chunkGradients: gradients.baseAddress!, parameterCount: network.parameterCount,
                            executor: ChunkExecutor(threads: threads),
                            reducer: ExactReducer(communicator: SerialCommunicator()), hyper: LayerHyperparameters())
            let warmup = 10
            for step in 0..<(warmup + steps) {
                let timed = step >= warmup
                var previous = now()
                try network.forward(activations, pass) { done in
                    let time = now()
                    if timed { forwardSeconds[done] += time - previous }
                    previous = time
                }
                network.loss.evaluate(outputs: activations.output, labels: labels, classes: 10, pass: pass,
                                      gradient: activations.outputGradient, chunkLoss: &chunkLoss, chunkCorrect: &chunkCorrect)
                previous = now()
                try network.backward(activations, pass) { done in
                    let time = now()
                    if timed { backwardSeconds[done] += time - previous }
                    previous = time
                }
            }
        }
    }
}
var total = 0.0
print("layer                                      forward ms  backward ms")
for (l, layer) in network.layers.enumerated() {
    let f = forwardSeconds[l] / Double(steps) * 1000, b = backwardSeconds[l] / Double(steps) * 1000
    total += f + b
    let name = network.fusedIntoPrevious[l] ? "  \(layer.description) (fused)" : layer.description
    print(name.padding(toLength: 42, withPad: " ", startingAt: 0), String(format: "%9.3f  %11.3f", f, b))
}
print(String(format: "total %.3f ms per step of %d images: %.0f images/s (layers only)", total, batch, Double(batch) / total * 1000))

// TEMP gemm shapes
func gemmRate(_ label: String, m: Int, n: Int, k: Int, aRowStride: Int, aColStride: Int, ldb: Int, accumulate: Bool) {
    let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k + 64), b = UnsafeMutablePointer<Float>.allocate(capacity: k * ldb + 64)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n + 64)
    for i in 0..<(m * k) { a[i] = Float(i % 7) * 0.1 }
    for i in 0..<(k * ldb) { b[i] = Float(i % 5) * 0.1 }
    c.initialize(repeating: 0, count: m * n)
    let reps = max(1, 2_000_000_000 / (2 * m * n * k))
    let start = now()
    for _ in 0..<reps {
        gemm(m: m, n: n, k: k, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb, c: c, ldc: n, accumulate: accumulate)
    }
    let seconds = now() - start
    print(label, String(format: "%.1f GFLOP/s", Double(2 * m * n * k * reps) / seconds / 1e9))
}
gemmRate("conv2 fwd", m: 64, n: 968, k: 288, aRowStride: 288, aColStride: 1, ldb: 968, accumulate: true)
gemmRate("conv2 dW", m: 288, n: 64, k: 968, aRowStride: 968, aColStride: 1, ldb: 64, accumulate: true)
gemmRate("conv2 dx", m: 288, n: 968, k: 64, aRowStride: 1, aColStride: 288, ldb: 968, accumulate: false)
gemmRate("conv2 fwd 1 sample", m: 64, n: 121, k: 288, aRowStride: 288, aColStride: 1, ldb: 121, accumulate: true)
gemmRate("conv1 fwd", m: 32, n: 5408, k: 9, aRowStride: 9, aColStride: 1, ldb: 5408, accumulate: true)
gemmRate("conv1 dW", m: 9, n: 32, k: 5408, aRowStride: 5408, aColStride: 1, ldb: 32, accumulate: true)
gemmRate("fc1 dW", m: 128, n: 1600, k: 8, aRowStride: 1, aColStride: 128, ldb: 1600, accumulate: true)
gemmRate("fc1 fwd", m: 8, n: 128, k: 1600, aRowStride: 1600, aColStride: 1, ldb: 128, accumulate: true)
gemmRate("fc1 dx", m: 8, n: 1600, k: 128, aRowStride: 128, aColStride: 1, ldb: 1600, accumulate: false)
