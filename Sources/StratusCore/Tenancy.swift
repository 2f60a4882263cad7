/// Who may do what. Operator admins manage the whole cloud; the other roles are
/// scoped to one organization.
public enum Role: String, Codable, Sendable, CaseIterable {
    case operatorAdmin = "operator-admin"
    case orgAdmin = "org-admin"
    case member
    case viewer

    public static func parse(_ text: String) throws(StratusError) -> Role {
        guard let role = Role(rawValue: text) else {
            throw StratusError(
                .invalidArgument, "role: '\(text)' is not one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return role
    }
}

public struct Org: Codable, Equatable, Sendable {
    public init(id: OrgID, displayName: String, createdAt: Timestamp, weight: Int = 1) {
        self.id = id
        self.displayName = displayName
        self.createdAt = createdAt
        self.weight = weight
    }

    public let id: OrgID
    public var displayName: String
    public let createdAt: Timestamp
    /// Fair-share weight: an org with weight 2 is entitled to twice the GPU time of weight 1.
    public var weight: Int
}

public struct Project: Codable, Equatable, Sendable {
    public init(id: ProjectID, org: OrgID, name: String, createdAt: Timestamp) {
        self.id = id
        self.org = org
        self.name = name
        self.createdAt = createdAt
    }

    public let id: ProjectID
    public let org: OrgID
    public let name: String
    public let createdAt: Timestamp
}

public struct Member: Codable, Equatable, Sendable {
    public init(id: MemberID, org: OrgID, email: String, role: Role, createdAt: Timestamp) {
        self.id = id
        self.org = org
        self.email = email
        self.role = role
        self.createdAt = createdAt
    }

    public let id: MemberID
    public let org: OrgID
    public let email: String
    public var role: Role
    public let createdAt: Timestamp
}

/// An API key as the control plane stores it: only the SHA-256 of the secret is kept.
public struct APIKey: Codable, Equatable, Sendable {
    public init(
        id: KeyID, org: OrgID?, role: Role, name: String, secretHash: String, hint: String, createdAt: Timestamp,
        revokedAt: Timestamp?
    ) {
        self.id = id
        self.org = org
        self.role = role
        self.name = name
        self.secretHash = secretHash
        self.hint = hint
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    public let id: KeyID
    /// nil for operator keys.
    public let org: OrgID?
    public let role: Role
    public let name: String
    /// Lowercase hex SHA-256 of the whole secret.
    public let secretHash: String
    /// The first characters of the secret, to recognise it in listings.
    public let hint: String
    public let createdAt: Timestamp
    public var revokedAt: Timestamp?
}

/// The authenticated caller of a request.
public struct Principal: Equatable, Sendable {
    public let key: KeyID
    public let org: OrgID?
    public let role: Role

    public init(key: KeyID, org: OrgID?, role: Role) {
        self.key = key
        self.org = org
        self.role = role
    }

    public var isOperator: Bool { role == .operatorAdmin }

    /// Whether this caller may see objects of `org`. Callers of another org get a
    /// not-found, never a permission error, so that they cannot probe for IDs.
    public func canRead(_ org: OrgID) -> Bool { isOperator || self.org == org }

    public func requireRead(_ org: OrgID, _ what: String, _ id: String) throws(StratusError) {
        guard canRead(org) else { throw StratusError.notFound(what, id) }
    }

    /// Launch and cancel jobs: members and above.
    public func requireWrite(_ org: OrgID, _ what: String, _ id: String) throws(StratusError) {
        try requireRead(org, what, id)
        guard role != .viewer else {
            throw StratusError(.permissionDenied, "role viewer cannot change \(what)s")
        }
    }

    /// Projects, members and keys of an org: org admins and operators.
    public func requireAdmin(_ org: OrgID, _ what: String) throws(StratusError) {
        try requireRead(org, "org", org.rawValue)
        guard isOperator || role == .orgAdmin else {
            throw StratusError(.permissionDenied, "role \(role.rawValue) cannot manage \(what)s (org-admin required)")
        }
    }

    public func requireOperator(_ action: String) throws(StratusError) {
        guard isOperator else {
            throw StratusError(.permissionDenied, "\(action) requires an operator-admin key")
        }
    }
}

/// The organization that holds the operator's own (internal-tier) workloads.
public enum InternalOrg {
    public static let id: OrgID = "internal"
    public static let defaultProject = "default"
}
