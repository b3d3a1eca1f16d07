/**
 * UI strings of the reference portal, English and Dutch. The STRINGS object is plain JSON
 * (tests parse it to check that both languages have the same keys and placeholders).
 */

export const STRINGS = {
  "en": {
    "title": "Register with your ID card",
    "agentChecking": "Looking for the eID agent…",
    "agentRunning": "eID agent {version} is running.",
    "agentMissing": "The eID agent is not running on this computer.",
    "agentHelp": "Install the eID agent (see the project's README), or start it if it is installed:",
    "agentLost": "The connection to the eID agent was lost. Is it still running?",
    "noReaders": "No card reader found. Connect a reader.",
    "readerNoCard": "{reader}: no card",
    "readerCard": "{reader}: card present",
    "readerCardNamed": "{reader}: {holder}",
    "stepLogin": "Log in",
    "stepDetails": "Your details",
    "stepCode": "Registration code",
    "stepSign": "Confirm",
    "stepDone": "Done",
    "loginTitle": "Log in with your ID card",
    "loginIntro": "Put your ID card in the reader. You will be asked for your PIN in the eID agent's window.",
    "loginButton": "Log in with ID card",
    "busyPin": "Type your PIN in the eID agent's window…",
    "busyCard": "Reading your ID card…",
    "busyConsent": "Answer the question in the eID agent's window…",
    "busyServer": "Checking…",
    "detailsTitle": "A few questions",
    "welcome": "Welcome,",
    "prefillHint": "We filled in your name and birth date from your certificate. You can also read them from the identity file on your card (the agent asks your permission).",
    "readIdentityButton": "Fill in from my ID card",
    "identityRead": "Your name and birth date were read from your ID card.",
    "fieldName": "Full name",
    "fieldBirthDate": "Birth date",
    "fieldEmail": "E-mail",
    "fieldPhone": "Phone",
    "fieldCode": "Code",
    "next": "Next",
    "codeTitle": "Registration code",
    "codeIntro": "Open the phone app and type the 6-digit code it shows. A code is valid for 15 minutes and can be used once.",
    "openPhone": "Open the phone app (simulation)",
    "signTitle": "Confirm your registration",
    "signIntro": "You sign this summary with your ID card. You will be asked for your PIN again.",
    "signButton": "Confirm and sign",
    "summaryHash": "Signed: {hashFunction} hash {hash}",
    "doneTitle": "You are registered",
    "doneIntro": "Your account has been created with your verified identity.",
    "accountNumber": "Account number",
    "personId": "National number",
    "logout": "Log out",
    "errPinCancelled": "You cancelled the PIN entry. Nothing was done; you can try again.",
    "errPinTriesLeft": "Careful: your card has {n} PIN tries left.",
    "errPinWrong": "The PIN was wrong. You have {n} tries left.",
    "errPinBlocked": "Your PIN is blocked after too many wrong tries. Unblock it with your PUK at your municipality.",
    "errTimeout": "Nobody answered in the eID agent's window in time. Try again.",
    "errNoReader": "No card reader found. Connect your card reader and try again.",
    "errNoCard": "No ID card in the reader. Put your card in the reader and try again.",
    "errCardRemoved": "The ID card was removed during the operation. Put it back and try again.",
    "errOriginRefused": "The eID agent does not allow this website. Allow it in the agent's window.",
    "errBusy": "The eID card is busy with another request. Try again in a moment.",
    "errUnsupportedCard": "This card is not supported.",
    "errOtherCard": "The card in the reader is not the card you logged in with.",
    "errCardError": "The ID card did not answer as expected. Take it out, put it back and try again.",
    "errAuthFailed": "Your ID card could not be verified ({check}). Try again.",
    "errNotLoggedIn": "Your session has ended. Log in again.",
    "errWrongStep": "This step is not available now; the page was refreshed.",
    "errInvalidInput": "Check the field “{field}”.",
    "errCodeWrong": "That code is not right. You have {n} attempts left.",
    "errCodeExpired": "That code has expired. Ask the phone app for a new code.",
    "errCodeLocked": "Too many wrong codes. Ask the phone app for a new code.",
    "errCodeMissing": "There is no valid code. Ask the phone app for a new code.",
    "errSignFailed": "The signature could not be verified ({check}). Try again.",
    "errNotSamePerson": "The signature was made with another person's card.",
    "errUnexpected": "Something went wrong: {message}",
    "phoneTitle": "Phone app",
    "phoneSimulated": "Simulation: a real portal sends this code to your own phone.",
    "phoneIntro": "Your registration code:",
    "phoneValidUntil": "Valid until {time}",
    "phoneNone": "No valid code. Ask for a new one.",
    "phoneNoRegistration": "Start a registration on the portal first.",
    "phoneNew": "New code"
  },
  "nl": {
    "title": "Registreren met uw identiteitskaart",
    "agentChecking": "De eID-agent wordt gezocht…",
    "agentRunning": "eID-agent {version} is actief.",
    "agentMissing": "De eID-agent draait niet op deze computer.",
    "agentHelp": "Installeer de eID-agent (zie de README van het project), of start hem als hij al geïnstalleerd is:",
    "agentLost": "De verbinding met de eID-agent is verbroken. Draait hij nog?",
    "noReaders": "Geen kaartlezer gevonden. Sluit een kaartlezer aan.",
    "readerNoCard": "{reader}: geen kaart",
    "readerCard": "{reader}: kaart aanwezig",
    "readerCardNamed": "{reader}: {holder}",
    "stepLogin": "Aanmelden",
    "stepDetails": "Uw gegevens",
    "stepCode": "Registratiecode",
    "stepSign": "Bevestigen",
    "stepDone": "Klaar",
    "loginTitle": "Aanmelden met uw identiteitskaart",
    "loginIntro": "Steek uw identiteitskaart in de lezer. U typt uw pincode in het venster van de eID-agent.",
    "loginButton": "Aanmelden met eID",
    "busyPin": "Typ uw pincode in het venster van de eID-agent…",
    "busyCard": "Uw identiteitskaart wordt gelezen…",
    "busyConsent": "Beantwoord de vraag in het venster van de eID-agent…",
    "busyServer": "Bezig met controleren…",
    "detailsTitle": "Enkele vragen",
    "welcome": "Welkom,",
    "prefillHint": "Uw naam en geboortedatum komen uit uw certificaat. U kunt ze ook uit het identiteitsbestand op uw kaart lezen (de agent vraagt uw toestemming).",
    "readIdentityButton": "Invullen vanaf mijn identiteitskaart",
    "identityRead": "Uw naam en geboortedatum zijn van uw identiteitskaart gelezen.",
    "fieldName": "Volledige naam",
    "fieldBirthDate": "Geboortedatum",
    "fieldEmail": "E-mail",
    "fieldPhone": "Telefoon",
    "fieldCode": "Code",
    "next": "Volgende",
    "codeTitle": "Registratiecode",
    "codeIntro": "Open de telefoonapp en typ de code van 6 cijfers die ze toont. Een code is 15 minuten geldig en werkt één keer.",
    "openPhone": "Open de telefoonapp (simulatie)",
    "signTitle": "Bevestig uw registratie",
    "signIntro": "U ondertekent dit overzicht met uw identiteitskaart. U typt daarvoor opnieuw uw pincode.",
    "signButton": "Bevestigen en ondertekenen",
    "summaryHash": "Ondertekend: {hashFunction}-hash {hash}",
    "doneTitle": "U bent geregistreerd",
    "doneIntro": "Uw account is aangemaakt met uw geverifieerde identiteit.",
    "accountNumber": "Accountnummer",
    "personId": "Rijksregisternummer",
    "logout": "Afmelden",
    "errPinCancelled": "U hebt het intypen van de pincode geannuleerd. Er is niets gebeurd; u kunt het opnieuw proberen.",
    "errPinTriesLeft": "Let op: uw kaart heeft nog {n} pogingen voor de pincode.",
    "errPinWrong": "De pincode was fout. U hebt nog {n} pogingen.",
    "errPinBlocked": "Uw pincode is geblokkeerd na te veel foute pogingen. Deblokkeer ze met uw PUK-code bij uw gemeente.",
    "errTimeout": "Er kwam niet op tijd een antwoord in het venster van de eID-agent. Probeer opnieuw.",
    "errNoReader": "Geen kaartlezer gevonden. Sluit uw kaartlezer aan en probeer opnieuw.",
    "errNoCard": "Er zit geen identiteitskaart in de lezer. Steek uw kaart in de lezer en probeer opnieuw.",
    "errCardRemoved": "De identiteitskaart werd tijdens de bewerking uit de lezer gehaald. Steek ze terug en probeer opnieuw.",
    "errOriginRefused": "De eID-agent staat deze website niet toe. Sta ze toe in het venster van de agent.",
    "errBusy": "De identiteitskaart is bezig met een andere aanvraag. Probeer zo dadelijk opnieuw.",
    "errUnsupportedCard": "Deze kaart wordt niet ondersteund.",
    "errOtherCard": "De kaart in de lezer is niet de kaart waarmee u zich aanmeldde.",
    "errCardError": "De identiteitskaart antwoordde niet zoals verwacht. Haal ze uit de lezer, steek ze terug en probeer opnieuw.",
    "errAuthFailed": "Uw identiteitskaart kon niet gecontroleerd worden ({check}). Probeer opnieuw.",
    "errNotLoggedIn": "Uw sessie is afgelopen. Meld u opnieuw aan.",
    "errWrongStep": "Deze stap is nu niet beschikbaar; de pagina werd vernieuwd.",
    "errInvalidInput": "Controleer het veld “{field}”.",
    "errCodeWrong": "Die code klopt niet. U hebt nog {n} pogingen.",
    "errCodeExpired": "Die code is verlopen. Vraag een nieuwe code in de telefoonapp.",
    "errCodeLocked": "Te veel foute codes. Vraag een nieuwe code in de telefoonapp.",
    "errCodeMissing": "Er is geen geldige code. Vraag een nieuwe code in de telefoonapp.",
    "errSignFailed": "De handtekening kon niet gecontroleerd worden ({check}). Probeer opnieuw.",
    "errNotSamePerson": "De handtekening werd gezet met de kaart van iemand anders.",
    "errUnexpected": "Er ging iets mis: {message}",
    "phoneTitle": "Telefoonapp",
    "phoneSimulated": "Simulatie: een echt portaal stuurt deze code naar uw eigen telefoon.",
    "phoneIntro": "Uw registratiecode:",
    "phoneValidUntil": "Geldig tot {time}",
    "phoneNone": "Geen geldige code. Vraag een nieuwe.",
    "phoneNoRegistration": "Begin eerst een registratie op het portaal.",
    "phoneNew": "Nieuwe code"
  }
};

export const LANGUAGES = Object.keys(STRINGS);
const STORAGE_KEY = "eidportal_lang";

/** The chosen language: the user's earlier choice, else the server's (Accept-Language). */
export function chooseLanguage(serverDefault) {
  const stored = globalThis.localStorage?.getItem(STORAGE_KEY);
  if (LANGUAGES.includes(stored)) return stored;
  return LANGUAGES.includes(serverDefault) ? serverDefault : "en";
}

/** Remember the user's choice (the server reads the cookie for its default too). */
export function rememberLanguage(lang) {
  globalThis.localStorage?.setItem(STORAGE_KEY, lang);
  document.cookie = `${STORAGE_KEY}=${lang}; Path=/; SameSite=Strict; Max-Age=31536000`;
}

/** The string `key` in `lang` with `{name}` placeholders filled from `vars`. */
export function t(lang, key, vars = {}) {
  const text = STRINGS[lang]?.[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Translate every element with data-i18n, and the document language. */
export function applyTranslations(lang, root = document) {
  document.documentElement.lang = lang;
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(lang, element.dataset.i18n);
  }
  document.title = t(lang, root.body?.classList.contains("phone") ? "phoneTitle" : "title");
}
