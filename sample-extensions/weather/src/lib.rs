//! Weather: current conditions and daily forecasts from the Open-Meteo API
//! (capability `network.http`, scoped to `api.open-meteo.com`, `GET` only).
#![forbid(unsafe_code)]

use omni_guest_sdk::{export_tools, http, ToolError};
use serde::{Deserialize, Serialize};

const FORECAST_URL: &str = "https://api.open-meteo.com/v1/forecast";
/// Open-Meteo forecasts at most 16 days ahead.
const MAX_DAYS: u32 = 16;
const TIMEOUT_MS: u32 = 10_000;

/// Arguments of `get_weather`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceArgs {
    pub latitude: f64,
    pub longitude: f64,
}

/// Arguments of `get_forecast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastArgs {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default = "default_days")]
    pub days: u32,
}

fn default_days() -> u32 {
    7
}

/// Current conditions.
#[derive(Debug, PartialEq, Serialize)]
pub struct Current {
    /// Local time of the observation, ISO 8601 without offset (`timezone` says which).
    pub time: String,
    pub timezone: String,
    pub temperature: Option<f64>,
    pub temperature_unit: String,
    pub wind_speed: Option<f64>,
    pub wind_speed_unit: String,
    pub weather_code: Option<u8>,
    pub description: String,
}

/// One day of a forecast.
#[derive(Debug, PartialEq, Serialize)]
pub struct Day {
    /// The local date, `YYYY-MM-DD`.
    pub date: String,
    pub temperature_min: Option<f64>,
    pub temperature_max: Option<f64>,
    pub precipitation: Option<f64>,
}

/// A daily forecast.
#[derive(Debug, PartialEq, Serialize)]
pub struct Forecast {
    pub timezone: String,
    pub temperature_unit: String,
    pub precipitation_unit: String,
    pub days: Vec<Day>,
}

fn check_place(latitude: f64, longitude: f64) -> Result<(), ToolError> {
    // `contains` is false for NaN, so non-numbers are refused too.
    if !(-90.0..=90.0).contains(&latitude) {
        return Err(ToolError::invalid(format!("`latitude` must be between -90 and 90, got {latitude}")));
    }
    if !(-180.0..=180.0).contains(&longitude) {
        return Err(ToolError::invalid(format!("`longitude` must be between -180 and 180, got {longitude}")));
    }
    Ok(())
}

/// The Open-Meteo URL for the current weather at a place.
pub fn current_url(latitude: f64, longitude: f64) -> Result<String, ToolError> {
    check_place(latitude, longitude)?;
    Ok(format!(
        "{FORECAST_URL}?latitude={latitude}&longitude={longitude}\
         &current=temperature_2m,wind_speed_10m,weather_code&timezone=auto"
    ))
}

/// The Open-Meteo URL for a `days`-day forecast at a place.
pub fn forecast_url(latitude: f64, longitude: f64, days: u32) -> Result<String, ToolError> {
    check_place(latitude, longitude)?;
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ToolError::invalid(format!("`days` must be between 1 and {MAX_DAYS}, got {days}")));
    }
    Ok(format!(
        "{FORECAST_URL}?latitude={latitude}&longitude={longitude}\
         &daily=temperature_2m_max,temperature_2m_min,precipitation_sum\
         &forecast_days={days}&timezone=auto"
    ))
}

#[derive(Deserialize)]
struct CurrentResponse {
    #[serde(default)]
    timezone: String,
    current: CurrentValues,
    #[serde(default)]
    current_units: CurrentUnits,
}

#[derive(Deserialize)]
struct CurrentValues {
    time: String,
    temperature_2m: Option<f64>,
    wind_speed_10m: Option<f64>,
    weather_code: Option<u8>,
}

#[derive(Deserialize, Default)]
struct CurrentUnits {
    #[serde(default)]
    temperature_2m: String,
    #[serde(default)]
    wind_speed_10m: String,
}

#[derive(Deserialize)]
struct DailyResponse {
    #[serde(default)]
    timezone: String,
    daily: DailyValues,
    #[serde(default)]
    daily_units: DailyUnits,
}

#[derive(Deserialize)]
struct DailyValues {
    time: Vec<String>,
    temperature_2m_max: Vec<Option<f64>>,
    temperature_2m_min: Vec<Option<f64>>,
    precipitation_sum: Vec<Option<f64>>,
}

#[derive(Deserialize, Default)]
struct DailyUnits {
    #[serde(default)]
    temperature_2m_max: String,
    #[serde(default)]
    precipitation_sum: String,
}

/// Open-Meteo's error body: `{"error": true, "reason": "..."}`.
#[derive(Deserialize)]
struct ApiError {
    reason: String,
}

fn parse<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ToolError> {
    if !(200..300).contains(&status) {
        let reason = serde_json::from_slice::<ApiError>(body)
            .map(|e| e.reason)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
        return Err(ToolError::failed(format!("Open-Meteo answered HTTP {status}: {reason}")));
    }
    serde_json::from_slice(body).map_err(|e| ToolError::failed(format!("unexpected answer from Open-Meteo: {e}")))
}

/// Turn an Open-Meteo `current` answer into [`Current`].
pub fn parse_current(status: u16, body: &[u8]) -> Result<Current, ToolError> {
    let r: CurrentResponse = parse(status, body)?;
    Ok(Current {
        time: r.current.time,
        timezone: r.timezone,
        temperature: r.current.temperature_2m,
        temperature_unit: r.current_units.temperature_2m,
        wind_speed: r.current.wind_speed_10m,
        wind_speed_unit: r.current_units.wind_speed_10m,
        weather_code: r.current.weather_code,
        description: r.current.weather_code.map_or("unknown", describe).to_string(),
    })
}

/// Turn an Open-Meteo `daily` answer into [`Forecast`].
pub fn parse_forecast(status: u16, body: &[u8]) -> Result<Forecast, ToolError> {
    let r: DailyResponse = parse(status, body)?;
    let d = r.daily;
    let n = d.time.len();
    if d.temperature_2m_max.len() != n || d.temperature_2m_min.len() != n || d.precipitation_sum.len() != n {
        return Err(ToolError::failed("unexpected answer from Open-Meteo: daily series of different lengths"));
    }
    let days = d
        .time
        .into_iter()
        .zip(d.temperature_2m_min)
        .zip(d.temperature_2m_max)
        .zip(d.precipitation_sum)
        .map(|(((date, min), max), precipitation)| Day {
            date,
            temperature_min: min,
            temperature_max: max,
            precipitation,
        })
        .collect();
    Ok(Forecast {
        timezone: r.timezone,
        temperature_unit: r.daily_units.temperature_2m_max,
        precipitation_unit: r.daily_units.precipitation_sum,
        days,
    })
}

/// Words for a WMO weather interpretation code, as Open-Meteo documents them.
pub fn describe(code: u8) -> &'static str {
    match code {
        0 => "clear sky",
        1 => "mainly clear",
        2 => "partly cloudy",
        3 => "overcast",
        45 => "fog",
        48 => "depositing rime fog",
        51 => "light drizzle",
        53 => "moderate drizzle",
        55 => "dense drizzle",
        56 => "light freezing drizzle",
        57 => "dense freezing drizzle",
        61 => "slight rain",
        63 => "moderate rain",
        65 => "heavy rain",
        66 => "light freezing rain",
        67 => "heavy freezing rain",
        71 => "slight snow fall",
        73 => "moderate snow fall",
        75 => "heavy snow fall",
        77 => "snow grains",
        80 => "slight rain showers",
        81 => "moderate rain showers",
        82 => "violent rain showers",
        85 => "slight snow showers",
        86 => "heavy snow showers",
        95 => "thunderstorm",
        96 => "thunderstorm with slight hail",
        99 => "thunderstorm with heavy hail",
        _ => "unknown",
    }
}

fn fetch(url: String) -> Result<http::Response, ToolError> {
    Ok(http::Request::get(url).header("accept", "application/json").timeout_ms(TIMEOUT_MS).send()?)
}

fn get_weather(args: PlaceArgs) -> Result<Current, ToolError> {
    let r = fetch(current_url(args.latitude, args.longitude)?)?;
    parse_current(r.status, &r.body)
}

fn get_forecast(args: ForecastArgs) -> Result<Forecast, ToolError> {
    let r = fetch(forecast_url(args.latitude, args.longitude, args.days)?)?;
    parse_forecast(r.status, &r.body)
}

export_tools!(get_weather, get_forecast);

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer in the shape Open-Meteo gives for `current=...`.
    const CURRENT: &str = r#"{"latitude":52.52,"longitude":13.419998,"generationtime_ms":0.03,
        "utc_offset_seconds":3600,"timezone":"Europe/Berlin","timezone_abbreviation":"GMT+1",
        "elevation":38.0,
        "current_units":{"time":"iso8601","interval":"seconds","temperature_2m":"°C",
            "wind_speed_10m":"km/h","weather_code":"wmo code"},
        "current":{"time":"2026-11-22T01:00","interval":900,"temperature_2m":3.4,
            "wind_speed_10m":11.2,"weather_code":61}}"#;

    /// An answer in the shape Open-Meteo gives for `daily=...`.
    const DAILY: &str = r#"{"latitude":-33.875,"longitude":151.25,"timezone":"Australia/Sydney",
        "daily_units":{"time":"iso8601","temperature_2m_max":"°C","temperature_2m_min":"°C",
            "precipitation_sum":"mm"},
        "daily":{"time":["2026-11-22","2026-11-23"],"temperature_2m_max":[26.1,null],
            "temperature_2m_min":[17.9,18.4],"precipitation_sum":[0.0,4.2]}}"#;

    #[test]
    fn urls_have_the_open_meteo_shape() {
        assert_eq!(
            current_url(52.52, 13.41).unwrap(),
            "https://api.open-meteo.com/v1/forecast?latitude=52.52&longitude=13.41\
             &current=temperature_2m,wind_speed_10m,weather_code&timezone=auto"
        );
        assert_eq!(
            forecast_url(-33.87, 151.21, 3).unwrap(),
            "https://api.open-meteo.com/v1/forecast?latitude=-33.87&longitude=151.21\
             &daily=temperature_2m_max,temperature_2m_min,precipitation_sum\
             &forecast_days=3&timezone=auto"
        );
    }

    #[test]
    fn ranges_are_checked() {
        for (lat, lon) in [(90.1, 0.0), (-91.0, 0.0), (0.0, 180.5), (0.0, -181.0), (f64::NAN, 0.0)] {
            assert!(current_url(lat, lon).is_err(), "{lat}, {lon}");
        }
        assert!(current_url(90.0, -180.0).is_ok());
        for days in [0, 17, 100] {
            let e = forecast_url(0.0, 0.0, days).unwrap_err();
            assert!(e.message().contains("`days`"), "{e}");
        }
        assert!(forecast_url(0.0, 0.0, 16).is_ok());
    }

    #[test]
    fn current_answer_is_summarized() {
        let c = parse_current(200, CURRENT.as_bytes()).unwrap();
        assert_eq!(
            c,
            Current {
                time: "2026-11-22T01:00".into(),
                timezone: "Europe/Berlin".into(),
                temperature: Some(3.4),
                temperature_unit: "°C".into(),
                wind_speed: Some(11.2),
                wind_speed_unit: "km/h".into(),
                weather_code: Some(61),
                description: "slight rain".into(),
            }
        );
    }

    #[test]
    fn daily_answer_becomes_days_with_gaps_kept() {
        let f = parse_forecast(200, DAILY.as_bytes()).unwrap();
        assert_eq!(f.timezone, "Australia/Sydney");
        assert_eq!(f.precipitation_unit, "mm");
        assert_eq!(f.days.len(), 2);
        assert_eq!(
            f.days[1],
            Day {
                date: "2026-11-23".into(),
                temperature_min: Some(18.4),
                temperature_max: None,
                precipitation: Some(4.2),
            }
        );
    }

    #[test]
    fn api_errors_carry_the_reason() {
        let body = br#"{"error":true,"reason":"Latitude must be in range of -90 to 90\u00b0."}"#;
        let e = parse_current(400, body).unwrap_err();
        assert_eq!(e.message(), "Open-Meteo answered HTTP 400: Latitude must be in range of -90 to 90°.");
        let e = parse_forecast(502, b"<html>bad gateway</html>").unwrap_err();
        assert!(e.message().contains("502: <html>bad gateway"), "{e}");
    }

    #[test]
    fn malformed_answers_are_failures() {
        assert!(parse_current(200, b"{}").is_err());
        let uneven = DAILY.replace("[0.0,4.2]", "[0.0]");
        assert!(parse_forecast(200, uneven.as_bytes()).unwrap_err().message().contains("different lengths"));
    }

    #[test]
    fn weather_codes_have_words() {
        assert_eq!(describe(0), "clear sky");
        assert_eq!(describe(95), "thunderstorm");
        assert_eq!(describe(42), "unknown");
    }
}
