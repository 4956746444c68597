import ArgumentParser

/// `--betas B1,B2`: Adam's two decay rates, written as PyTorch's `betas=(B1, B2)`.
struct Betas: ExpressibleByArgument {
    let beta1, beta2: Double

    init(beta1: Double, beta2: Double) { (self.beta1, self.beta2) = (beta1, beta2) }

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2, let beta1 = Double(parts[0]), let beta2 = Double(parts[1]) else { return nil }
        self.init(beta1: beta1, beta2: beta2)
    }

    var defaultValueDescription: String { "\(beta1),\(beta2)" }
}
