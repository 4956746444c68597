/// A contiguous slice of the tensors a reduction covers, with the name errors report.
public struct SumSegment: Sendable {
    public let name: String
    public let range: Range<Int>
    public init(name: String, range: Range<Int>) {
        self.name = name
        self.range = range
    }
}

/// Per-chunk partial sums of some values, read block by block by a reduction: `rows` chunks ×
/// the values, each chunk's partials of a block contiguous.
public protocol ChunkPartials {
    /// The blocks a reduction reads `range` in: consecutive runs of at most this many values,
    /// the first starting at `range.lowerBound` (`range` is one tensor).
    func blockLength(of range: Range<Int>) -> Int
    /// Where each chunk's partials of `block` start: chunk r's at `base + r·rowStride`. Valid
    /// until the next call with the same workspace.
    func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int)
}

extension ChunkPartials {
    /// How many blocks a reduction reads `range` in.
    public func blockCount(of range: Range<Int>) -> Int {
        let length = blockLength(of: range)
        return (range.count + length - 1) / length
    }

    /// Block b of `range`.
    public func block(_ b: Int, of range: Range<Int>) -> Range<Int> {
        let length = blockLength(of: range), start = range.lowerBound + b * length
        return start..<min(start + length, range.upperBound)
    }
}

/// Partials stored as `rows` × `width` floats, row-major.
public struct StoredPartials: ChunkPartials {
    public let base: UnsafePointer<Float>
    public let width: Int
    public init(_ base: UnsafePointer<Float>, width: Int) {
        self.base = base
        self.width = width
    }
    /// Blocks only so that threads can share a long tensor.
    public func blockLength(of range: Range<Int>) -> Int { 4096 }
    public func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int) {
        (base + block.lowerBound, width)
    }
}

/// The gradient partials of a pass: stored in `pass.chunkGradients`, or recomputed by the
/// layers that defer them.
public struct GradientPartials: ChunkPartials {
    let pass: Pass
    let deferring: [DeferredGradients]

    public init(pass: Pass, layers: [Layer]) {
        self.pass = pass
        deferring = layers.compactMap { $0 as? DeferredGradients }
    }

    private var stored: StoredPartials { StoredPartials(pass.chunkGradients!, width: pass.parameterCount) }

    private func deferrer(of range: Range<Int>) -> DeferredGradients? {
        deferring.first { $0.deferredRange.contains(range.lowerBound) }
    }

    public func blockLength(of range: Range<Int>) -> Int {
        deferrer(of: range)?.deferredBlockLength ?? stored.blockLength(of: range)
    }

    public func rows(_ block: Range<Int>, workspace: Workspace) -> (base: UnsafePointer<Float>, rowStride: Int) {
        guard let layer = deferrer(of: block) else { return stored.rows(block, workspace: workspace) }
        precondition(layer.deferredRange.contains(block.upperBound - 1), "a block straddles a deferred tensor's end")
        let partials = workspace.floats(.deferredPartials, count: pass.chunkCount * block.count)
        layer.deferredPartials(block, into: partials, pass: pass)
        return (UnsafePointer(partials), block.count)
    }
}
