//! Contact normalisation: national phone numbers become E.164 for the
//! mapping's region, emails are trimmed and lower-cased, anything else is
//! not a contact DigiDesk can survey.
