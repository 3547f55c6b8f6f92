//! Word lists for realistic generated values: several scripts, accents,
//! punctuation and odd spacing, as real catalogue data has.

pub const LATIN: &[&str] = &[
    "Amélie", "Star", "Wars", "Force", "Awakens", "Océan", "Eleven", "Crème", "Brûlée", "Niño", "Señor", "Straße",
    "Über", "Fjörd", "Noël", "Café", "Déjà", "Vu", "Night", "Dream", "Blue", "River", "Garden", "Ghost", "Summer",
    "Winter", "Love", "Zoë", "São", "Paulo", "Kraków", "Ångström", "Smörgåsbord", "Piñata", "Light", "Return",
    "King", "Queen", "Road", "City", "Heart", "Storm", "Silent", "Golden", "Little", "Wild", "Last", "First",
];
pub const CYRILLIC: &[&str] = &["Брат", "Война", "и", "мир", "Москва", "слезам", "не", "верит", "Солярис", "Сталкер", "Зеркало", "Дом", "Ночь", "Ёлка"];
pub const CJK: &[&str] = &["千と千尋", "神隠し", "東京", "物語", "七人の侍", "花様年華", "春", "夏", "秋", "冬", "龍", "猫", "기생충", "서울"];
pub const ARABIC: &[&str] = &["القاهرة", "الحب", "ليل", "نهار", "بحر", "قمر", "بيروت"];
pub const NUMBERS: &[&str] = &["2", "1984", "II", "3", "101", "XIII", "2049"];
/// Separators between words: plain, punctuation, and the double spaces and
/// stray marks that normalization must cope with.
pub const JOINERS: &[&str] = &[" ", " ", " ", " ", ": ", " - ", "  ", "'s ", "! ", ", ", "... ", " & ", "-", " (", ") "];
pub const ARTISTS: &[&str] = &[
    "Nirvana", "Björk", "Sigur Rós", "Кино", "宇多田ヒカル", "Fairuz", "Daft Punk", "Los Lobos", "Motörhead",
    "Beyoncé", "AC/DC", "The Beatles", "Céline Dion", "Mötley Crüe", "BTS", "Umm Kulthum", "Rammstein",
];
pub const LANGUAGES: &[&str] = &["en", "fr", "ru", "ja", "ar", "es", "de", "zh", "ko", "it", "pt"];
pub const GENRES: &[&str] = &["Productivity", "Games", "Education", "Music", "Photo & Video", "Health & Fitness", "Finance", "Social Networking", "Utilities", "Travel"];
pub const APP_SUFFIXES: &[&str] = &["", " Pro", " Lite", " HD", " 2", " for Teams", " — Editor", "+"];
pub const OTHER_TYPES: &[&str] = &["book", "podcast", "game", "audiobook", "episode"];
