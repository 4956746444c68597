/// The `--input` shape of `inspect`: dimensions joined by 'x', `CxHxW` or a feature count.
public enum InputShape {
    /// "3x32x32" → [3, 32, 32]; nil unless every dimension is a number in 1…65536.
    public static func parse(_ text: String) -> [Int]? {
        let fields = text.split(separator: "x")
        let shape = fields.compactMap { Int($0) }
        guard !shape.isEmpty, shape.count == fields.count, shape.allSatisfy({ $0 > 0 && $0 <= 65536 }) else { return nil }
        return shape
    }
}
