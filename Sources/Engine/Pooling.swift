/// Shared geometry of the pooling layers: windows of `kernel`² with `stride`, no padding,
/// floor rounding, as PyTorch's defaults.
public struct PoolGeometry: Sendable {
    public let channels, height, width, kernel, stride: Int
    public var outHeight: Int { (height - kernel) / stride + 1 }
    public var outWidth: Int { (width - kernel) / stride + 1 }

    init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        guard inShape.count == 3 else {
            throw EngineError.invalidModel("\(name): pooling needs an image input (C×H×W), got \(inShape)")
        }
        guard kernel >= 1, stride >= 1, inShape[1] >= kernel, inShape[2] >= kernel else {
            throw EngineError.invalidModel("\(name): a \(kernel)×\(kernel) pool does not fit a \(inShape[1])×\(inShape[2]) input")
        }
        (channels, height, width) = (inShape[0], inShape[1], inShape[2])
        self.kernel = kernel
        self.stride = stride
    }
}

/// `nn.MaxPool2d(kernel_size, stride)`, NCHW. The gradient goes to the first maximum of each
/// window in row-major order (NaN counts as a maximum), as PyTorch's CPU kernel does; backward
/// finds it again from the input rather than storing indices.
public final class MaxPool2d: Layer {
    public let geometry: PoolGeometry

    public init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        geometry = try PoolGeometry(name: name, inShape: inShape, kernel: kernel, stride: stride)
    }

    public var description: String { "MaxPool2d(kernel_size=\(geometry.kernel), stride=\(geometry.stride))" }
    public var inputShape: [Int] { [geometry.channels, geometry.height, geometry.width] }
    public var outputShape: [Int] { [geometry.channels, geometry.outHeight, geometry.outWidth] }

    /// Index within the plane of the window's first maximum.
    @inline(__always) func argmax(_ plane: UnsafePointer<Float>, _ oy: Int, _ ox: Int) -> Int {
        let g = geometry
        var best = (oy * g.stride) * g.width + ox * g.stride
        var bestValue = plane[best]
        for ky in 0..<g.kernel {
            for kx in 0..<g.kernel {
                let i = (oy * g.stride + ky) * g.width + ox * g.stride + kx
                let v = plane[i]
                if v > bestValue || (v.isNaN && !bestValue.isNaN) {
                    best = i
                    bestValue = v
                }
            }
        }
        return best
    }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let g = geometry
        let planes = g.channels, inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        pass.forEachChunk { first, count, _, _ in
            for p in (first * planes)..<((first + count) * planes) {
                let plane = x + p * inPlane, out = y + p * outPlane
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        out[oy * g.outWidth + ox] = plane[argmax(plane, oy, ox)]
                    }
                }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx else { return }
        let g = geometry
        let planes = g.channels, inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        pass.forEachChunk { first, count, _, _ in
            for p in (first * planes)..<((first + count) * planes) {
                let plane = x + p * inPlane, dPlane = dx + p * inPlane, dOut = dy + p * outPlane
                dPlane.update(repeating: 0, count: inPlane)
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        dPlane[argmax(plane, oy, ox)] += dOut[oy * g.outWidth + ox]
                    }
                }
            }
        }
    }
}

/// `nn.AvgPool2d(kernel_size, stride)`, NCHW: each output is the window's sum, added in
/// row-major order, divided by kernel².
public final class AvgPool2d: Layer {
    public let geometry: PoolGeometry

    public init(name: String, inShape: [Int], kernel: Int, stride: Int) throws {
        geometry = try PoolGeometry(name: name, inShape: inShape, kernel: kernel, stride: stride)
    }

    public var description: String { "AvgPool2d(kernel_size=\(geometry.kernel), stride=\(geometry.stride))" }
    public var inputShape: [Int] { [geometry.channels, geometry.height, geometry.width] }
    public var outputShape: [Int] { [geometry.channels, geometry.outHeight, geometry.outWidth] }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        let g = geometry
        let planes = g.channels, inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        let divisor = Float(g.kernel * g.kernel)
        pass.forEachChunk { first, count, _, _ in
            for p in (first * planes)..<((first + count) * planes) {
                let plane = x + p * inPlane, out = y + p * outPlane
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        var sum: Float = 0
                        for ky in 0..<g.kernel {
                            for kx in 0..<g.kernel {
                                sum += plane[(oy * g.stride + ky) * g.width + ox * g.stride + kx]
                            }
                        }
                        out[oy * g.outWidth + ox] = sum / divisor
                    }
                }
            }
        }
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        guard let dx else { return }
        let g = geometry
        let planes = g.channels, inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        let divisor = Float(g.kernel * g.kernel)
        pass.forEachChunk { first, count, _, _ in
            for p in (first * planes)..<((first + count) * planes) {
                let dPlane = dx + p * inPlane, dOut = dy + p * outPlane
                dPlane.update(repeating: 0, count: inPlane)
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        let share = dOut[oy * g.outWidth + ox] / divisor
                        for ky in 0..<g.kernel {
                            for kx in 0..<g.kernel {
                                dPlane[(oy * g.stride + ky) * g.width + ox * g.stride + kx] += share
                            }
                        }
                    }
                }
            }
        }
    }
}
