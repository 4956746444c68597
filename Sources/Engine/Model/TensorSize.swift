/// The bound on every tensor of a model: its input sample and each layer's weight and output
/// (per sample). 2²⁸ values (1 GiB of floats) is far above any model here and small enough that
/// every size computed from them fits an Int, so a mistyped spec or a corrupt checkpoint gets an
/// error rather than an overflow or a huge allocation.
public enum TensorSize {
    public static let maximum = 1 << 28

    /// The number of values in a tensor of `shape`, or nil when a dimension is below 1 or the
    /// count passes `maximum` (checked before the product can overflow).
    public static func bounded(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 1 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= maximum else { return nil }
            count = product
        }
        return count
    }

    /// "2×3×4", as errors print shapes.
    static func text(_ shape: [Int]) -> String { shape.map(String.init).joined(separator: "×") }
}
