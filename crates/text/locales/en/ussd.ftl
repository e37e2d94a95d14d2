# USSD screens, English. A screen is at most 182 characters with the longest values; no
# screen may count on a second page. Keep the numbers of the choices as they are.
ussd-main = offpay
    1 Purse balance
    2 Purse statement
    3 SMS account balance
    4 SMS account statement
    5 Language
    6 Help
ussd-no-purse = No purse is registered to this phone. An agent can register one.
ussd-purse-balance = Purse balance { $amount }, as of your last sync on { $synced }. Payments since then show after your next sync.
ussd-purse-balance-never = Purse balance { $amount }. Your purse has not synced yet.
ussd-purse-blocked = This purse is blocked. Please see an agent.
ussd-purse-statement = Purse statement:
    { $lines }
ussd-purse-statement-empty = Your purse statement is empty.
ussd-line-in = { $date } in { $amount }
ussd-line-out = { $date } out { $amount }
ussd-enter-envelope = Enter the envelope number printed on your TAN envelope (11 digits):
ussd-bad-envelope = An envelope number has 11 digits. Please dial again.
ussd-not-bound = This phone is not registered for that account. Use your registered phone, or see an agent.
ussd-account-held = This account is on hold while the bank checks its records. Nothing can be done on it here now. Please see an agent.
ussd-choose-language = Choose your language:
    1 English
    2 Kiswahili
    3 Francais
ussd-language-set = Your texts are now in { $language }.
ussd-help = 1-2: your purse as last synced. 3-4: your SMS account. 5: language. Payments are by SMS with your TAN envelope. Send HELP by SMS for the messages.
ussd-wrong-choice = That choice is not on the menu. Please dial again.
ussd-session-ended = Your session has ended. Please dial again.
ussd-unavailable = The service is busy. Please try again in a few minutes.
