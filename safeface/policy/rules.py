"""The rule catalogue (see docs/requirements.md) and the policy profiles built from it.

Checks in the guard are written once per *concept* (consent, retention, assessment, ...); a
profile maps a concept to its own rule ID. A stacked deployment reports the rule of the first
profile, in the order the deployment lists them, that holds the concept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..errors import ConfigError

PROFILES = ("cn-2025", "eu", "us-bipa")
DEFAULT_PROFILE = "cn-2025"


@dataclass(frozen=True)
class Rule:
    id: str
    profile: str  # "cn-2025", "eu", "us-bipa", "capture" (every profile, when a purpose asks) or "standard"
    mode: str  # "enforce", "record" or "measure"
    title: str
    how: str


RULES: tuple[Rule, ...] = (
    Rule("CN-01", "cn-2025", "enforce", "Specific purpose, necessary for it (M 4)",
         "Each purpose is declared with a necessity rationale; a call for an undeclared purpose is refused."),
    Rule("CN-02", "cn-2025", "enforce", "Notice before processing; a changed notice is given again (M 5)",
         "The notice holds all fields; its hash is bound into every consent; stale consents are refused."),
    Rule("CN-03", "cn-2025", "record", "Accessibility for elderly and disabled people (M 5)",
         "Attestation kept in the deployment; a non-face alternative exists (CN-11)."),
    Rule("CN-04", "cn-2025", "enforce", "Separate, voluntary, explicit, informed consent (M 6, PIPL 29)",
         "Every enroll, verify and identify needs a signed consent token for that subject, purpose and operation."),
    Rule("CN-05", "cn-2025", "enforce", "Consent can be withdrawn; processing stops (M 6, PIPL 15)",
         "Revocation stops use at once, erases the subject's templates and returns a signed receipt."),
    Rule("CN-06", "cn-2025", "enforce", "Under 14: consent of a parent or guardian (M 7)",
         "A token whose declared birth date makes the subject under 14 must carry guardian consent. A floor under "
         "every profile: 16 under eu (13-16 as configured), 13 under us-bipa; stacked, the highest."),
    Rule("CN-07", "cn-2025", "enforce", "No transmission without legal requirement or separate consent (M 8)",
         "Export is refused unless the consent allows transmission or a legal basis is given."),
    Rule("CN-08", "cn-2025", "enforce", "Retention no longer than necessary (M 8)",
         "Every template has an expiry from its purpose; expired templates are never matched and are purged."),
    Rule("CN-09", "cn-2025", "enforce", "Impact assessment before processing, annual review (M 9, D)",
         "Processing is refused without an assessment dated before go-live covering the configuration."),
    Rule("CN-10", "cn-2025", "enforce", "Records of processing (M 9)",
         "Every call, allowed or refused, is appended to a hash-chained, signed audit log."),
    Rule("CN-11", "cn-2025", "enforce", "A non-face alternative exists (M 10)",
         "Each purpose registers at least one non-biometric alternative unless a law makes face recognition mandatory."),
    Rule("CN-12", "cn-2025", "record", "Prefer national identity authentication services (M 11)",
         "The identity service in use is recorded in the deployment and the report."),
    Rule("CN-13", "cn-2025", "record", "No deception or coercion (M 12)",
         "The consent-screen version is bound into each token."),
    Rule("CN-14", "cn-2025", "enforce", "Public places: public safety only, capture area, signs (M 13)",
         "A public-place deployment needs public-safety purposes, a capture area and a signage attestation."),
    Rule("CN-15", "cn-2025", "enforce", "No devices in private spaces within public places (M 13)",
         "Hotel rooms, public baths, changing rooms, toilets and the like (names normalised) are refused at "
         "registration and at every call. A floor under every profile."),
    Rule("CN-16", "cn-2025", "enforce", "Security measures: encryption, access control, audit (M 14)",
         "Templates sealed at rest, keys apart from data under a passphrase, roles for each operation."),
    Rule("CN-16b", "cn-2025", "enforce", "Processing without consent where a law provides (PIPL 13)",
         "A legal-basis token signed by a trusted authority key naming the provision; logged as such."),
    Rule("CN-17", "cn-2025", "enforce", "Filing once 100,000 people are stored (M 15)",
         "Enrolment beyond the threshold is refused until a filing reference is recorded."),
    Rule("CN-18", "cn-2025", "enforce", "No analysis of race, ethnicity, religion, health or social class (D 11)",
         "No such inference exists and analyze() refuses the request; no attribute model is loaded."),
    Rule("EU-01", "eu", "enforce", "No biometric categorisation of sensitive traits (AI Act 5(1)(g))",
         "As CN-18."),
    Rule("EU-02", "eu", "enforce", "No untargeted scraping of face databases (AI Act 5(1)(e))",
         "Every template records its provenance; bulk enrolment without a consent per person is refused."),
    Rule("EU-03", "eu", "enforce", "No emotion recognition at work or in education (AI Act 5(1)(f))",
         "No emotion inference exists; analyze() refuses it."),
    Rule("EU-05", "eu", "enforce", "Art. 9(2) basis for biometric identification (GDPR 9)", "As CN-04."),
    Rule("EU-06", "eu", "enforce", "Erasure without undue delay (GDPR 17)", "As CN-05, with an erasure receipt."),
    Rule("EU-07", "eu", "record", "Records of processing activities (GDPR 30)", "Generated in the compliance report."),
    Rule("EU-08", "eu", "enforce", "DPIA before high-risk processing (GDPR 35)", "As CN-09."),
    Rule("US-01", "us-bipa", "enforce", "Retention schedule: purpose end or 3 years after last interaction (BIPA 15(a))",
         "Expiry = min(purpose end, last interaction + 3 years)."),
    Rule("US-02", "us-bipa", "enforce", "Written notice and release before collection (BIPA 15(b))", "As CN-04."),
    Rule("US-03", "us-bipa", "enforce", "No sale; disclosure restricted (BIPA 15(c)(d))",
         "No export without consent or legal basis; every disclosure logged."),
    Rule("US-04", "us-bipa", "enforce", "Texas: destroy at most one year after the purpose ends (CUBI 503.001)",
         "Profile parameter: the grace after the purpose end is at most 365 days."),
    Rule("PA-01", "capture", "enforce", "Liveness: a live person physically present (ISO/IEC 30107-1)",
         "Applies to a purpose that declares \"liveness\": \"required\": enroll, verify and identify need fresh "
         "liveness evidence signed by the workspace, bound to its challenge nonce, the clip's hash and the probe's "
         "face, used once."),
    Rule("PA-02", "capture", "enforce", "Enrolment only from a capture fit for recognition (ISO/IEC 29794-5)",
         "Applies to a purpose that declares \"capture_quality\": \"required\": enrolment refuses a capture below "
         "the purpose's quality floor (eye distance, pose, focus, light, framing, one face, nose and mouth "
         "uncovered), naming what to fix; quality floors on a purpose that does not require it are refused."),
    Rule("ST-01", "standard", "measure", "Protected references (ISO/IEC 24745)",
         "Keyed revocable transform plus authenticated encryption; re-keying without images."),
    Rule("ST-02", "standard", "measure", "Template protection measured (ISO/IEC 30136)", "Evaluation tool."),
    Rule("ST-03", "standard", "measure", "Presentation attack detection (ISO/IEC 30107-3)", "Evaluation tool."),
    Rule("ST-04", "standard", "measure", "Accuracy FMR/FNMR, FPIR/FNIR (ISO/IEC 19795-1)", "Evaluation tool."),
    Rule("ST-05", "standard", "measure", "Demographic differentials (NIST FRTE)", "Evaluation tool."),
)

RULES_BY_ID = {r.id: r for r in RULES}

# concept -> {profile: rule}. A concept listed in BASELINE is enforced whatever the profiles (the
# SDK has no way around it); its rule is then the first active profile's, else the first listed.
CONCEPTS: dict[str, dict[str, str]] = {
    "purpose": {"cn-2025": "CN-01", "eu": "EU-05", "us-bipa": "US-02"},
    "notice": {"cn-2025": "CN-02", "eu": "EU-05", "us-bipa": "US-02"},
    "consent": {"cn-2025": "CN-04", "eu": "EU-05", "us-bipa": "US-02"},
    "withdrawal": {"cn-2025": "CN-05", "eu": "EU-06", "us-bipa": "US-02"},
    "guardian": {"cn-2025": "CN-06"},
    "transmit": {"cn-2025": "CN-07", "us-bipa": "US-03"},
    "retention": {"cn-2025": "CN-08", "us-bipa": "US-01"},
    "texas": {"us-bipa": "US-04"},
    "assessment": {"cn-2025": "CN-09", "eu": "EU-08"},
    "records": {"cn-2025": "CN-10", "eu": "EU-07"},
    "alternative": {"cn-2025": "CN-11"},
    "public-place": {"cn-2025": "CN-14"},
    "private-space": {"cn-2025": "CN-15"},
    "security": {"cn-2025": "CN-16"},
    "legal-basis": {"cn-2025": "CN-16b"},
    "filing": {"cn-2025": "CN-17"},
    "provenance": {"eu": "EU-02"},
    "sensitive": {"cn-2025": "CN-18", "eu": "EU-01"},
    "emotion": {"eu": "EU-03"},
    # Capture rules hold under every profile, but only for a purpose that declares the requirement.
    "liveness": {"capture": "PA-01"},
    "capture-quality": {"capture": "PA-02"},
}
# Private spaces and minors are floors (deployment/floors.py): no profile permits a camera in a
# toilet or an under-age consent without a guardian, so CN-15 and CN-06 hold under all of them.
# The impact assessment is a floor too: it is what authenticates the settings that can weaken
# protection, so a deployment switched to a profile without one must not shed that check.
BASELINE = frozenset({"purpose", "consent", "withdrawal", "transmit", "retention", "records", "security",
                      "legal-basis", "sensitive", "emotion", "liveness", "capture-quality", "private-space",
                      "guardian", "assessment"})


def check_profiles(profiles: Sequence[str]) -> tuple[str, ...]:
    if isinstance(profiles, str) or not isinstance(profiles, (list, tuple)):
        raise ConfigError("'profiles' must be a list of profile names, e.g. [\"cn-2025\"].")
    if not profiles:
        raise ConfigError("a deployment needs at least one policy profile: cn-2025, eu or us-bipa.")
    out = []
    for p in profiles:
        if p not in PROFILES:
            raise ConfigError(f"unknown policy profile {p!r}; choose from {', '.join(PROFILES)}.")
        if p not in out:
            out.append(p)
    return tuple(out)


def rule_for(concept: str, profiles: Sequence[str]) -> Optional[str]:
    """The rule that enforces `concept` under these profiles, or None when none of them holds it
    (and it is not a baseline the SDK enforces everywhere)."""
    table = CONCEPTS[concept]
    for p in profiles:
        if p in table:
            return table[p]
    if concept in BASELINE:
        return next(iter(table.values()))
    return None


# The rules that are floors under every profile (BASELINE concepts held by one profile only).
FLOOR_RULES = frozenset({CONCEPTS["private-space"]["cn-2025"], CONCEPTS["guardian"]["cn-2025"],
                         CONCEPTS["assessment"]["cn-2025"]})


def active_rules(profiles: Sequence[str]) -> list[Rule]:
    """The rules of these profiles, plus the floors, the capture rules and the standards, in
    catalogue order."""
    return [r for r in RULES if r.profile in profiles or r.profile in ("capture", "standard") or r.id in FLOOR_RULES]
