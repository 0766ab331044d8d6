//! Prompt-injection patterns: a curated, weighted list (documented in this folder's
//! README). Each pattern starts with one of its anchors; the anchor automaton in
//! [`super::detectors`] finds anchors and only then runs the pattern's regex, anchored at the
//! anchor, on a short window. A request scores the sum of the weights of the *distinct*
//! patterns it contains; a policy acts when the score reaches its threshold (default 100).
//!
//! NB: phrases preceded by a negation ("never reveal your system prompt", "do not ignore
//! previous instructions") are what system prompts say, not attacks; patterns marked
//! `negatable` skip them.

use regex::{Regex, RegexBuilder};

use super::{Result, SafetyError};

/// Injection categories; the finding's rule id is `injection.<category>`.
pub const CATEGORIES: [&str; 6] = [
    "injection.instruction_override",
    "injection.role_hijack",
    "injection.system_prompt_extraction",
    "injection.delimiter",
    "injection.encoding",
    "injection.exfiltration",
];

/// One pattern, as written in the table.
pub(super) struct PatternDef {
    /// Name (for the README and tests).
    pub name: &'static str,
    /// Index into [`CATEGORIES`].
    pub category: usize,
    /// Weight added to the score when present.
    pub weight: u32,
    /// Literal starts of the pattern (matched ignoring ASCII case).
    pub anchors: &'static [&'static [u8]],
    /// The regex; `^` is the anchor's position.
    pub regex: &'static str,
    /// Skipped when one of the two words before it is a negation.
    pub negatable: bool,
    /// Only at the start of a line.
    pub line_start: bool,
    /// Not right after this character (tag characters after U+1F3F4 are a flag emoji).
    pub not_after: Option<char>,
}

const OI: usize = 0;
const RH: usize = 1;
const SP: usize = 2;
const DL: usize = 3;
const EN: usize = 4;
const EX: usize = 5;

/// The pattern table. Weights: 100 = enough alone at the default threshold; 50–90 = strong
/// but seen in benign text; ≤ 40 = weak signals that only count together.
pub(super) const PATTERNS: &[PatternDef] = &[
    // --- instruction override -------------------------------------------------------
    PatternDef {
        name: "ignore_previous_instructions",
        category: OI,
        weight: 100,
        anchors: &[b"ignor", b"disregard", b"forget", b"overlook"],
        regex: r"^(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?|overlook)\s+(?:(?:all|any|each|every|the|your|my|these|those|of|everything|anything|that|what|was)\s+){0,3}(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|old|existing|system|developer|safety)\s+(?:instructions?|prompts?|rules?|directions?|directives?|guidelines?|commands?|context|messages?|constraints?|guidance|programming|orders|text)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "ignore_everything",
        category: OI,
        weight: 80,
        anchors: &[b"ignor", b"disregard", b"forget"],
        regex: r"^(?:ignore|disregard|forget)\s+(?:all|any|every|everything|anything)\s+(?:(?:of|the|your|you)\s+){0,2}(?:instructions?|rules?|guidelines?|restrictions?|above|before|so\s+far|prior|you\s+(?:were|have\s+been)\s+told|you\s+know|i\s+said|previously)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "ignore_the_above_and",
        category: OI,
        weight: 100,
        anchors: &[b"ignor", b"disregard", b"forget"],
        regex: r"^(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|that\s+|everything\s+)?(?:above|previous|prior|preceding|foregoing)\s*,?\s+and\s+(?:instead\s+)?(?:say|print|respond|output|reply|write|answer|tell|do)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "ignore_the_above",
        category: OI,
        weight: 60,
        anchors: &[b"ignor", b"disregard", b"forget"],
        regex: r"^(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|that\s+|everything\s+)?(?:above|previous|prior|preceding|foregoing)\s*(?:[.,;:!'\x22]|$)",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "restrictions_lifted",
        category: OI,
        weight: 60,
        anchors: &[
            b"restrictions",
            b"protocols",
            b"filters",
            b"guardrails",
            b"guidelines",
            b"rules",
            b"limitations",
            b"safeguards",
        ],
        regex: r"^(?:restrictions|protocols|filters|guardrails|guidelines|rules|limitations|safeguards)\s+(?:are\s+|have\s+been\s+|were\s+|is\s+)?(?:now\s+|hereby\s+)?(?:disabled|lifted|removed|turned\s+off|suspended|deactivated|void|off)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "authority_override",
        category: OI,
        weight: 70,
        anchors: &[
            b"admin override",
            b"administrator override",
            b"developer override",
            b"system override",
            b"root override",
            b"sudo override",
        ],
        regex: r"^(?:admin|administrator|developer|system|root|sudo)\s+override\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "stop_following_instructions",
        category: OI,
        weight: 100,
        anchors: &[b"do not", b"don't", b"stop", b"cease", b"no longer"],
        regex: r"^(?:do\s+not|don't|stop|cease|no\s+longer)\s+(?:follow(?:ing)?|obey(?:ing)?|adher(?:e|ing)\s+to|listen(?:ing)?\s+to)\s+(?:(?:any|the|your|those|these|all|of)\s+){0,2}(?:previous\s+|prior\s+|original\s+|system\s+|initial\s+)?(?:instructions?|rules?|guidelines?|prompts?|directives?|programming)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "override_rules",
        category: OI,
        weight: 100,
        anchors: &[b"override", b"bypass", b"circumvent"],
        regex: r"^(?:override|bypass|circumvent)\s+(?:(?:all|any|the|your|its|of|my)\s+){0,2}(?:safety\s+|content\s+|security\s+|ethical\s+|previous\s+|built-in\s+|moderation\s+)?(?:instructions?|rules|guidelines|restrictions|guardrails|policies|safeguards|programming|moderation|filters)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "disable_safety",
        category: OI,
        weight: 100,
        anchors: &[b"disable", b"turn off", b"deactivate", b"remove"],
        regex: r"^(?:disable|turn\s+off|deactivate|remove)\s+(?:(?:all|any|the|your|its|of|my)\s+){0,2}(?:safety|content|ethical|moderation)\s+(?:filters?|guidelines|restrictions|guardrails|rules|policies|checks|protections?|settings)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "new_instructions",
        category: OI,
        weight: 50,
        anchors: &[
            b"new instruction",
            b"updated instruction",
            b"revised instruction",
            b"real instruction",
            b"actual instruction",
            b"new rules",
            b"new system prompt",
        ],
        regex: r"^(?:new|updated|revised|real|actual)\s+(?:instructions?|rules|system\s+prompt)\s*(?::|are\b|follow\b|below\b|-)",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "from_now_on",
        category: OI,
        weight: 40,
        anchors: &[b"from now on"],
        regex: r"^from\s+now\s+on,?\s+(?:you|your|act|respond|answer|always|only|ignore|never|pretend)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "previous_instructions_void",
        category: OI,
        weight: 70,
        anchors: &[b"previous", b"prior", b"above", b"earlier", b"original"],
        regex: r"^(?:previous|prior|above|earlier|original)\s+(?:instructions?|prompts?|rules|messages?|directives?)\s+(?:was|were|is|are|have\s+been)\s+(?:(?:just|only|all|now)\s+)?(?:fake|a\s+test|wrong|cancel+ed|void|obsolete|revoked|outdated|no\s+longer\s+valid|invalid|null|superseded|overridden)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    // --- role hijack --------------------------------------------------------------------
    PatternDef {
        name: "you_are_now",
        category: RH,
        weight: 40,
        anchors: &[b"you are now", b"you're now"],
        regex: r"^you(?:\s+are|'re)\s+now\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "you_are_now_unrestricted",
        category: RH,
        weight: 90,
        anchors: &[b"you are now", b"you're now"],
        regex: r"^you(?:\s+are|'re)\s+now\s+(?:(?:a|an|in|the|my|operating\s+in)\s+)?(?:dan|unrestricted|unfiltered|uncensored|jailbroken|free\s+(?:from|of)|no\s+longer\s+(?:an?\s+)?(?:ai|assistant|bound|restricted|limited)|evil|unaligned|amoral|(?:developer|god|admin|sudo|jailbreak)\s+mode)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "pretend_unrestricted",
        category: RH,
        weight: 100,
        anchors: &[
            b"pretend",
            b"imagine",
            b"roleplay",
            b"role-play",
            b"act as",
            b"act like",
            b"behave as",
            b"behave like",
            b"simulate",
            b"emulate",
        ],
        regex: r"^(?:pretend|imagine|role-?play|act|behave|simulate|emulate)\b[^.\n]{0,48}?\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unaligned|evil\s+(?:ai|assistant|chatbot|bot|model|version)|without\s+(?:any\s+)?(?:restrictions|filters|limits|rules|guidelines))\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "freed_from_restrictions",
        category: RH,
        weight: 100,
        anchors: &[b"you have been", b"you are", b"you were", b"you're"],
        regex: r"^you(?:\s+have\s+been|\s+are|\s+were|'re)\s+(?:now\s+)?(?:freed|liberated|released|unshackled|unchained)\s+from\s+(?:(?:all|your|the|any|of)\s+)*(?:restrictions|rules|guidelines|limitations|constraints|programming|filters|policies)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "claims_authority",
        category: RH,
        weight: 40,
        anchors: &[b"i am the", b"i am your", b"i'm the", b"i'm your"],
        regex: r"^i(?:\s+am|'m)\s+(?:the|your)\s+(?:system\s+administrator|administrator|admin|developer|creator|owner|operator|system)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "no_restrictions",
        category: RH,
        weight: 40,
        anchors: &[
            b"no restrictions",
            b"no limitations",
            b"no filters",
            b"no censorship",
            b"no guidelines",
            b"no rules",
            b"no boundaries",
            b"no guardrails",
            b"without restrictions",
            b"without any restrictions",
            b"without limitations",
            b"without filters",
            b"without censorship",
            b"without any filters",
            b"free from",
            b"free of",
        ],
        regex: r"^(?:no|without|free\s+(?:from|of))\s+(?:(?:any|all|the|your)\s+)?(?:restrictions|limitations|limits|filters|censorship|guidelines|rules|boundaries|guardrails|moral\s+constraints|ethical\s+constraints)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "not_bound_by_rules",
        category: RH,
        weight: 90,
        anchors: &[
            b"not bound",
            b"not restricted",
            b"not limited",
            b"no longer bound",
            b"no longer restricted",
            b"not constrained",
        ],
        regex: r"^(?:not|no\s+longer)\s+(?:bound|restricted|limited|constrained)\s+by\s+(?:(?:any|the|your|its|openai's|anthropic's)\s+)?(?:rules|guidelines|policies|policy|restrictions|content\s+polic(?:y|ies)|ethics|filters|programming|safety)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "do_anything_now",
        category: RH,
        weight: 80,
        anchors: &[b"do anything now"],
        regex: r"^do\s+anything\s+now\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "dan_persona",
        category: RH,
        weight: 40,
        anchors: &[b"dan"],
        regex: r"^DAN\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "special_mode",
        category: RH,
        weight: 40,
        anchors: &[
            b"developer mode",
            b"god mode",
            b"admin mode",
            b"debug mode",
            b"sudo mode",
            b"jailbreak mode",
            b"unrestricted mode",
            b"dev mode",
            b"dan mode",
        ],
        regex: r"^(?:developer|god|admin|debug|sudo|jailbreak|unrestricted|dev|dan)\s+mode\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "special_mode_enabled",
        category: RH,
        weight: 90,
        anchors: &[
            b"developer mode",
            b"god mode",
            b"admin mode",
            b"sudo mode",
            b"jailbreak mode",
            b"unrestricted mode",
            b"dan mode",
        ],
        regex: r"^(?:developer|god|admin|sudo|jailbreak|unrestricted|dan)\s+mode\s+(?:is\s+(?:now\s+)?)?(?:enabled|activated|engaged|unlocked|on(?:[.!:;,)]|\s*$))",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "jailbreak",
        category: RH,
        weight: 50,
        anchors: &[b"jailbr"],
        regex: r"^jailbr(?:eak|oken|eaking)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "must_comply",
        category: RH,
        weight: 40,
        anchors: &[b"you must", b"you will", b"you shall", b"you have to"],
        regex: r"^you\s+(?:must|will|shall|have\s+to)\s+(?:always\s+)?(?:answer|comply\s+with|obey|respond\s+to|fulfil+)\s+(?:every|any|all|each)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    // --- system prompt extraction -----------------------------------------------------
    PatternDef {
        name: "reveal_system_prompt",
        category: SP,
        weight: 100,
        anchors: &[
            b"reveal",
            b"show",
            b"print",
            b"display",
            b"output",
            b"repeat",
            b"tell me",
            b"give me",
            b"leak",
            b"dump",
            b"disclose",
            b"expose",
            b"share",
            b"recite",
            b"write out",
            b"spell out",
            b"echo",
            b"return",
        ],
        regex: r"^(?:reveal|show|print|display|output|repeat|tell\s+me|give\s+me|leak|dump|disclose|expose|share|recite|write\s+out|spell\s+out|echo|return)\s+(?:(?:me|us|back|out|all|of|the|your|its|this|my|exact|exactly|verbatim|full|entire|complete|whole|above|previous|contents\s+of|hidden|secret|internal|original|initial|confidential|real|actual)\s+){0,5}(?:system|initial|original|hidden|secret|internal|developer|pre-?prompt|starting|first|confidential)\s*(?:prompt|instructions?|message|rules|directives?|configuration|guidelines|context)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "reveal_your_instructions",
        category: SP,
        weight: 70,
        anchors: &[
            b"reveal",
            b"show",
            b"print",
            b"display",
            b"output",
            b"repeat",
            b"tell me",
            b"give me",
            b"leak",
            b"dump",
            b"disclose",
            b"share",
            b"recite",
            b"respond with",
            b"reply with",
            b"list",
        ],
        regex: r"^(?:reveal|show|print|display|output|repeat|tell\s+me|give\s+me|leak|dump|disclose|share|recite|respond\s+with|reply\s+with|list)\s+(?:me\s+|us\s+)?(?:all\s+(?:of\s+)?)?your\s+(?:(?:full|entire|complete|exact|original|initial|current|hidden|secret)\s+)*(?:instructions|configuration|config|rules|directives|guidelines|prompt)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "instructions_verbatim",
        category: SP,
        weight: 90,
        anchors: &[b"repeat", b"print", b"output", b"reveal", b"recite", b"write", b"show"],
        regex: r"^(?:repeat|print|output|reveal|recite|write|show)\s+(?:(?:me|back|out|all|of|the|your)\s+){0,3}(?:instructions|prompt|rules)\s+(?:(?:you\s+(?:were|have\s+been)\s+given|above)\s+)?(?:verbatim|word\s+for\s+word|exactly|in\s+full)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "repeat_them_verbatim",
        category: SP,
        weight: 40,
        anchors: &[b"repeat", b"print", b"output", b"recite"],
        regex: r"^(?:repeat|print|output|recite)\s+(?:them|it|this|that|those|everything)\s+(?:word\s+for\s+word|verbatim)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "what_are_your_instructions",
        category: SP,
        weight: 70,
        anchors: &[b"what are your", b"what were your", b"what is your"],
        regex: r"^what\s+(?:are|were|is)\s+your\s+(?:(?:original|initial|exact|system|hidden|secret|first|full)\s+)*(?:instructions|system\s+prompt|prompt|directives)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "repeat_text_above",
        category: SP,
        weight: 60,
        anchors: &[b"repeat", b"print", b"output", b"copy"],
        regex: r"^(?:repeat|print|output|copy)\s+(?:(?:all|everything|the\s+(?:text|words|content|messages?))\s+)?(?:above|before\s+this|preceding|from\s+the\s+(?:start|beginning|top))\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "starting_with_you_are",
        category: SP,
        weight: 40,
        anchors: &[b"starting with", b"beginning with"],
        regex: r#"^(?:starting|beginning)\s+with\s+(?:the\s+(?:phrase|words?)\s+)?["'\u{201c}]?you\s+are\b"#,
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "system_prompt_mention",
        category: SP,
        weight: 20,
        anchors: &[b"system prompt"],
        regex: r"^system\s+prompt\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    // --- delimiter tricks -------------------------------------------------------------
    PatternDef {
        name: "chat_template_token",
        category: DL,
        weight: 70,
        anchors: &[b"<|"],
        regex: r"^<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|end_of_turn|start_of_turn)\|>",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "chat_template_system_turn",
        category: DL,
        weight: 100,
        anchors: &[b"<|"],
        regex: r"^<\|(?:im_start|start_header_id)\|>\s*system\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "llama_inst_tag",
        category: DL,
        weight: 50,
        anchors: &[b"[inst]", b"[/inst]"],
        regex: r"^\[/?INST\]",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "llama_sys_tag",
        category: DL,
        weight: 70,
        anchors: &[b"<<sys>>", b"<</sys>>"],
        regex: r"^<</?SYS>>",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "markdown_role_header",
        category: DL,
        weight: 60,
        anchors: &[b"##"],
        // NB: not `### Instruction:`, which Alpaca-style prompts use legitimately.
        regex: r"^#{2,6}[ \t]*(?:system|new\s+instructions|admin|developer)[ \t]*(?::|\r?\n|$)",
        negatable: false,
        line_start: true,
        not_after: None,
    },
    PatternDef {
        name: "xml_role_tag",
        category: DL,
        weight: 50,
        anchors: &[
            b"<system",
            b"</system",
            b"<instruction",
            b"</instruction",
            b"<admin",
            b"</admin",
            b"<developer",
            b"</developer",
        ],
        regex: r"^</?(?:system|instructions?|admin|developer)(?:[_-]?(?:prompt|message|instructions?))?\s*>",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "end_of_prompt",
        category: DL,
        weight: 50,
        anchors: &[b"end of"],
        regex: r"^end\s+of\s+(?:the\s+)?(?:system\s+prompt|prompt|instructions|user\s+input|system\s+message)\b",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "fake_role_line",
        category: DL,
        weight: 30,
        anchors: &[b"system:", b"system :", b"admin:", b"developer:"],
        regex: r"^(?:system|admin|developer)\s?:\s",
        negatable: false,
        line_start: true,
        not_after: None,
    },
    // --- encoding tricks --------------------------------------------------------------
    PatternDef {
        name: "decode_and_follow",
        category: EN,
        weight: 100,
        anchors: &[b"decode", b"decipher", b"deobfuscate", b"unscramble", b"translate", b"convert"],
        regex: r"^(?:decode|decipher|deobfuscate|unscramble|translate|convert)\b[^.\n]{0,40}?\b(?:base-?64|rot-?13|hex(?:adecimal)?|binary|morse|caesar|reversed?)\b[^.\n]{0,60}?\b(?:follow|execute|obey|run|act\s+on|perform|carry\s+out)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "follow_hidden_instructions",
        category: EN,
        weight: 100,
        anchors: &[b"follow", b"execute", b"obey", b"run", b"perform", b"carry out"],
        regex: r"^(?:follow|execute|obey|run|perform|carry\s+out)\s+(?:(?:the|these|those|its|any|all)\s+)?(?:decoded|hidden|encoded|embedded|secret|base64|invisible|concealed)\s+(?:instructions?|commands?|text|message|payload|orders)\b",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "base64_encoded_override",
        category: EN,
        weight: 100,
        // base64 of "ignore ", "Ignore ", "disregard", "Disregard", "you are now", "You are now"
        anchors: &[
            b"aWdub3Jl",
            b"SWdub3Jl",
            b"ZGlzcmVnYXJk",
            b"RGlzcmVnYXJk",
            b"eW91IGFyZSBub3c",
            b"WW91IGFyZSBub3c",
        ],
        regex: r"^(?:aWdub3JlI|SWdub3JlI|ZGlzcmVnYXJk|RGlzcmVnYXJk|eW91IGFyZSBub3c|WW91IGFyZSBub3c)",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "unicode_tag_smuggling",
        category: EN,
        weight: 100,
        anchors: &[b"\xF3\xA0\x80", b"\xF3\xA0\x81"],
        regex: r"^[\u{E0000}-\u{E007F}]{3,}",
        negatable: false,
        line_start: false,
        not_after: Some('\u{1F3F4}'),
    },
    PatternDef {
        name: "bidi_override",
        category: EN,
        weight: 20,
        anchors: &["\u{202E}".as_bytes(), "\u{202D}".as_bytes()],
        regex: r"^[\u{202D}\u{202E}]",
        negatable: false,
        line_start: false,
        not_after: None,
    },
    // --- exfiltration -----------------------------------------------------------------
    PatternDef {
        name: "send_secrets_out",
        category: EX,
        weight: 100,
        anchors: &[
            b"send",
            b"post",
            b"upload",
            b"forward",
            b"exfiltrate",
            b"transmit",
            b"email",
            b"submit",
            b"leak",
        ],
        regex: r"^(?:send|post|upload|forward|exfiltrate|transmit|email|submit|leak)\s+(?:(?:all|the|this|these|every|any|your|my|user's|users'|of|full|entire|complete|whole)\s+){0,3}(?:conversation(?:\s+history)?|chat\s+history|history|credentials|secrets?|api\s+keys?|passwords?|tokens?|system\s+prompt|memory|personal\s+data)\s+(?:to|via|using)\s+(?:https?://|\S+@\S+\.\w|this\s+(?:url|endpoint|address|webhook)|the\s+following\s+(?:url|address|endpoint|webhook))",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "send_data_to_url",
        category: EX,
        weight: 60,
        anchors: &[b"send", b"post", b"upload", b"forward", b"exfiltrate", b"transmit", b"email", b"submit"],
        regex: r"^(?:send|post|upload|forward|exfiltrate|transmit|email|submit)\s+(?:(?:all|the|this|these|every|any|your|my|user's|of)\s+){0,3}(?:data|information|info|files?|messages|emails|contacts|documents|context)\s+(?:to|via|using)\s+(?:https?://|\S+@\S+\.\w|this\s+(?:url|endpoint|address|webhook)|the\s+following\s+(?:url|address|endpoint|webhook))",
        negatable: true,
        line_start: false,
        not_after: None,
    },
    PatternDef {
        name: "markdown_image_exfiltration",
        category: EX,
        weight: 80,
        anchors: &[b"!["],
        regex: r"^!\[[^\]\n]{0,100}\]\(https?://[^)\s]{1,200}[?&][A-Za-z_]{1,20}=(?:\{|\$|%7B|\[)",
        negatable: false,
        line_start: false,
        not_after: None,
    },
];

/// Words that, just before a pattern, turn it into a rule rather than an attack.
const NEGATIONS: &[&str] = &[
    "not",
    "never",
    "don't",
    "dont",
    "cannot",
    "can't",
    "won't",
    "shouldn't",
    "mustn't",
    "no",
    "nor",
    "refuse",
];

/// A compiled pattern.
#[derive(Debug)]
pub(super) struct InjectionPattern {
    pub category: usize,
    pub weight: u32,
    pub anchors: &'static [&'static [u8]],
    negatable: bool,
    line_start: bool,
    not_after: Option<char>,
    regex: Regex,
}

/// The longest stretch a pattern looks at after its anchor.
const WINDOW: usize = 240;

impl InjectionPattern {
    /// The end of this pattern's match starting exactly at `at`, if it matches there.
    pub(super) fn matches(&self, text: &str, at: usize) -> Option<usize> {
        let b = text.as_bytes();
        if at > 0
            && b.get(at - 1).is_some_and(|c| c.is_ascii_alphanumeric())
            && b.get(at).is_some_and(u8::is_ascii_alphanumeric)
        {
            return None;
        }
        if self.line_start {
            let line = text[..at].rfind('\n').map_or(0, |i| i + 1);
            if !text[line..at].chars().all(|c| c == ' ' || c == '\t' || c == '>') {
                return None;
            }
        }
        let mut end = (at + WINDOW).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if !text.is_char_boundary(at) {
            return None;
        }
        if let Some(c) = self.not_after
            && text[..at].trim_end_matches(|x: char| ('\u{E0000}'..='\u{E007F}').contains(&x)).ends_with(c)
        {
            return None;
        }
        let m = self.regex.find(&text[at..end])?;
        if self.negatable && negated(&text[..at]) {
            return None;
        }
        Some(at + m.end())
    }
}

/// Whether one of the two words before the end of `before` is a negation.
fn negated(before: &str) -> bool {
    let mut start = before.len().saturating_sub(40);
    while !before.is_char_boundary(start) {
        start += 1;
    }
    let tail = before[start..].to_lowercase().replace('\u{2019}', "'");
    let words: Vec<&str> =
        tail.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).collect();
    words.iter().rev().take(2).any(|w| NEGATIONS.contains(w))
}

/// Compiles the table.
pub(super) fn compile() -> Result<Vec<InjectionPattern>> {
    PATTERNS
        .iter()
        .map(|p| {
            // `dan_persona` is the one case-sensitive pattern (DAN, not Dan).
            let case_insensitive = p.name != "dan_persona" && p.name != "base64_encoded_override";
            let regex = RegexBuilder::new(p.regex)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| SafetyError::Internal(format!("injection pattern {}: {e}", p.name)))?;
            Ok(InjectionPattern {
                category: p.category,
                weight: p.weight,
                anchors: p.anchors,
                negatable: p.negatable,
                line_start: p.line_start,
                not_after: p.not_after,
                regex,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_and_starts_with_an_anchor() {
        let compiled = compile().unwrap();
        assert_eq!(compiled.len(), PATTERNS.len());
        for (def, p) in PATTERNS.iter().zip(&compiled) {
            assert!(def.regex.starts_with('^'), "{}", def.name);
            assert!(def.weight > 0 && def.weight <= 100, "{}", def.name);
            assert!(!def.anchors.is_empty(), "{}", def.name);
            assert!(p.category < CATEGORIES.len());
        }
    }

    #[test]
    fn negation_words() {
        assert!(negated("You must never "));
        assert!(negated("Do not "));
        assert!(negated("I won\u{2019}t "));
        assert!(!negated("Don't hesitate to "));
        assert!(!negated("Please "));
    }
}
