/// A model as a compact text spec: layer tokens joined by '-', e.g.
/// `conv32k3-relu-maxpool2-conv64k3-relu-maxpool2-fc128-relu-fc`.
///
/// Tokens: `conv<out>k<kernel>[s<stride>][p<padding>]`, `bn`, `relu`, `gelu`, `tanh`,
/// `maxpool<k>[s<stride>]`, `avgpool<k>[s<stride>]`, `flatten`, `fc<out>`, `fc` (a linear
/// layer to the data's class count), `logsoftmax` (then the loss is NLL). A Flatten is put in
/// front of the first `fc` that follows an image. Input shape and class count come from the data.
public struct ModelSpec: Sendable, Equatable {
    public enum Token: Sendable, Equatable {
        case conv(out: Int, kernel: Int, stride: Int, padding: Int)
        case batchNorm
        case activation(Activation.Function)
        case maxPool(kernel: Int, stride: Int)
        case avgPool(kernel: Int, stride: Int)
        case flatten
        case linear(out: Int?)
        case logSoftmax
    }

    public static let presets: [(name: String, spec: String)] = [
        ("seed-cnn", "conv32k3-relu-maxpool2-conv64k3-relu-maxpool2-fc128-relu-fc"),
        ("seed-cnn-bn", "conv32k3-bn-relu-maxpool2-conv64k3-bn-relu-maxpool2-fc128-relu-fc"),
        ("cifar-cnn", "conv16k3p1-relu-maxpool2-conv32k3p1-relu-maxpool2-fc128-relu-fc"),
        ("letters-cnn", "conv32k3p1-maxpool2-gelu-conv64k3p1-maxpool2-gelu-conv128k3p1-maxpool2-gelu-fc256-gelu-fc-logsoftmax"),
        ("mlp", "fc256-tanh-fc128-tanh-fc"),
    ]

    static let grammar = "conv<out>k<kernel>[s<stride>][p<padding>], bn, relu, gelu, tanh, maxpool<k>[s<stride>], avgpool<k>[s<stride>], flatten, fc<out>, fc, logsoftmax"

    /// The canonical spec text (presets expanded).
    public let text: String
    public let tokens: [Token]

    /// A preset name or a spec.
    public init(_ nameOrSpec: String) throws {
        let text = ModelSpec.presets.first { $0.name == nameOrSpec }?.spec ?? nameOrSpec
        guard !text.isEmpty else { throw EngineError.invalidModel("the model spec is empty") }
        self.text = text
        tokens = try text.split(separator: "-", omittingEmptySubsequences: false).map { try ModelSpec.parse(String($0), in: text) }
    }

    static func parse(_ token: String, in text: String) throws -> Token {
        switch token {
        case "bn": return .batchNorm
        case "relu": return .activation(.relu)
        case "gelu": return .activation(.gelu)
        case "tanh": return .activation(.tanh)
        case "flatten": return .flatten
        case "logsoftmax": return .logSoftmax
        case "fc": return .linear(out: nil)
        default: break
        }
        let presetNames = ModelSpec.presets.map(\.name).joined(separator: ", ")
        let unknown = EngineError.invalidModel(
            "unknown model token '\(token)' in '\(text)'; allowed tokens: \(grammar); presets: \(presetNames)")
        for (prefix, letters) in [("conv", "ksp"), ("maxpool", "s"), ("avgpool", "s"), ("fc", "")] where token.hasPrefix(prefix) {
            guard let fields = numberFields(String(token.dropFirst(prefix.count)), letters: letters),
                  fields[""]! >= 1 else { throw unknown }
            switch prefix {
            case "conv":
                guard let kernel = fields["k"] else { throw unknown }
                return .conv(out: fields[""]!, kernel: kernel, stride: fields["s"] ?? 1, padding: fields["p"] ?? 0)
            case "maxpool": return .maxPool(kernel: fields[""]!, stride: fields["s"] ?? fields[""]!)
            case "avgpool": return .avgPool(kernel: fields[""]!, stride: fields["s"] ?? fields[""]!)
            default: return .linear(out: fields[""]!)
            }
        }
        throw unknown
    }

    /// "32k3p1" → ["": 32, "k": 3, "p": 1]; nil unless it is a leading number followed by
    /// letter-number pairs drawn from `letters`, each at most once, every number ≤ 65536.
    static func numberFields(_ text: String, letters: String) -> [String: Int]? {
        var fields: [String: Int] = [:]
        var key = ""
        var digits = ""
        func flush() -> Bool {
            guard let n = Int(digits), n <= 65536, fields[key] == nil else { return false }
            fields[key] = n
            return true
        }
        for ch in text {
            if ch.isASCII && ch.isNumber {
                digits.append(ch)
            } else if letters.contains(ch) {
                guard flush() else { return nil }
                key = String(ch)
                digits = ""
            } else {
                return nil
            }
        }
        return flush() ? fields : nil
    }
}
