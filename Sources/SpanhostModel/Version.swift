/// The version of spanhost's executables (`spanhost --version`, `spanhostd --version`).
public enum SpanhostVersion {
    public static let current = "0.9.0"
}
