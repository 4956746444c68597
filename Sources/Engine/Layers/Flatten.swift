/// `nn.Flatten()`: C×H×W → C·H·W; the values are already in that order.
public final class Flatten: Layer {
    public let inputShape: [Int], outputShape: [Int]
    public init(inShape: [Int]) {
        inputShape = inShape
        outputShape = [inShape.reduce(1, *)]
    }
    public var description: String { "Flatten()" }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ pass: Pass) throws {
        y.update(from: x, count: pass.sampleCount * inputSize)
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ pass: Pass) throws {
        dx?.update(from: dy, count: pass.sampleCount * inputSize)
    }
}
