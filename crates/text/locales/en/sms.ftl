# SMS-TAN replies and notices, English. Every message must fit one GSM-7 SMS (160 septets) with
# the longest realistic values (tests/catalogue.rs). Keep PAY, PAYG, PAYC, OK, REG, BAL, STMT,
# LIMIT, DIALBACK, HIGH, LATER, PASSWORD, DISPUTE, LANG, HELP, REF, SUM and "BANK ROW n TAN x"
# unchanged: people type them back, and tools read them.
#
# Glossary (use these words, the same in every message):
#   envelope   the printed TAN envelope (bank-issued sheet of rows)
#   row        one numbered line of the envelope; "cross out" a used row
#   TAN        the 3-digit code of a row
#   SUM        the 6-digit checksum the payer works out for a message
#   balance    money available in the account
#   statement  the list of recent payments (STMT)
#   payee      who receives a payment; payer: who pays
#   agent      the operator's counter where people get help

sms-empty = Empty message. Send HELP to see the messages you can send.
sms-too-long = Message too long. Send one instruction per SMS. Send HELP for the list.
sms-bad-sign = Cannot read the sign { $sign } in your message. Use letters, digits, spaces, and * between parts.
sms-bad-sign-hidden = Your message has a sign we cannot read. Use letters, digits, spaces, and * between parts.
sms-unknown-keyword = Unknown message. Start with PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT, DIALBACK, HIGH, LATER, PASSWORD, DISPUTE, LANG or HELP.
sms-missing-part = Your message stops before the { $field }. Example: { $example }
sms-unreadable-part = Could not read the { $field }. Example: { $example }
sms-too-many-parts = Too many parts in your message. Example: { $example }
sms-ambiguous = Could not tell the parts of your message apart. Put * between the parts, like PAY*envelope*payee*amount*row*checksum
sms-bad-part = Could not read the { $field }.
sms-bad-phone = Could not read the phone number.
sms-bad-date-time = That date or time does not exist. Example: LATER 2026-12-01 09:00 PAY ...
sms-too-many-decimals = Could not read the amount: { $currency } has { $decimals } decimals. Nothing was done.
sms-example-pay = PAY envelope payee amount row checksum
sms-example-payg = PAYG envelope row coded-payee amount+col2 size-code SUM
sms-example-payc = PAYC envelope row coded-payee amount+col2 size-code SUM
sms-example-reg = REG coded-new-envelope 26399912345 5 SUM

sms-field-payer = envelope number (11 digits) or pay number (12 digits)
sms-field-new-envelope = new envelope number (11 digits)
sms-field-payee = payee account number (12 digits)
sms-field-coded-payee = coded payee (2 digits then 10 grid codes)
sms-field-amount = amount (like 1500 or 1500.50)
sms-field-coded-amount = amount plus column 2
sms-field-currency = currency (like KES)
sms-field-row = row number (1 to 50)
sms-field-tan = TAN (3 digits)
sms-field-checksum = checksum (6 digits)
sms-field-size-code = amount size code (3 digits)
sms-field-reference = payment reference (8 digits)
sms-field-limit-kind = limit kind DAY, WEEK, EACH or TO
sms-field-switch = ON or OFF
sms-field-password = password (8 to 32 letters or digits)
sms-field-date = date (YYYY-MM-DD)
sms-field-time = time (HH:MM)
sms-field-scheduled-payment = payment (PAY, PAYG or PAYC ...)
sms-field-language = language (EN, SW or FR)

sms-refused-not-authenticated = Not accepted: the envelope number, row or code is wrong. Nothing was done.
sms-refused-row-used = Row { $row } was used before and cannot be used again. Nothing was done. Use a row you have not crossed out.
sms-refused-row-out-of-range = There is no row { $row } on your envelope. Nothing was done.
sms-refused-envelope-locked = This envelope is locked after too many wrong codes. Visit an agent with your ID to unlock it.
sms-refused-envelope-not-active = This envelope is not in use. Use your current envelope, or register this one with REG.
sms-refused-rows-exhausted = Your envelope has too few rows left. Get a new envelope and send REG coded-new-envelope old-envelope row SUM with your last row.
sms-refused-phone-not-bound = This account takes instructions only from its registered phones. Nothing was done.
sms-refused-pay-number-required = This account pays only with its pay number. Send it instead of the envelope number.
sms-refused-last-row-reserved = That is the last free row of your envelope: it is kept to register your next envelope (REG). Nothing was done; the row is still yours.
sms-refused-content-mismatch = Not accepted: the SUM (6 digits) does not match this message. If you typed it as written, it was changed on its way. Nothing was paid or changed.
sms-refused-codes-do-not-match = Not accepted: the coded payee, amount or codes do not match your envelope row. Nothing was paid.
sms-refused-unknown-payee = No account receives with that payee number. Check it. Nothing was paid.
sms-refused-same-payer-and-payee = You cannot pay your own account. Nothing was paid.
sms-refused-zero-amount = The amount must be more than zero. Nothing was paid.
sms-refused-amount-too-large = Too large for a coded payment (most 999999999.99). Split it. Nothing was paid.
sms-refused-per-payment-limit = Refused: above your limit for one payment. Change it with LIMIT ... EACH. Nothing was paid.
sms-refused-daily-limit = Refused: above your daily limit. Change it with LIMIT ... DAY. Nothing was paid.
sms-refused-weekly-limit = Refused: above your weekly limit. Change it with LIMIT ... WEEK. Nothing was paid.
sms-refused-payee-limit = Refused: above your daily limit for this payee. Change it with LIMIT ... TO. Nothing was paid.
sms-refused-insufficient-funds = Refused: not enough money for the amount and the fee. Nothing was paid.
sms-refused-currency-not-accepted = Refused: pay in your account's currency or the payee's. Nothing was paid.
sms-refused-soft-currency = Refused: this account's currency cannot be changed into another. Nothing was paid.
sms-refused-no-pending-callback = No payment is waiting for that bank row and TAN. Nothing was paid.
sms-refused-callback-expired = Too late: the payment waited { $minutes } minutes and was cancelled. Send it again with a new row.
sms-refused-envelope-not-registrable = That new envelope cannot be registered: unknown, already in use, or locked.
sms-refused-bad-schedule-time = The payment time must be in the future and within a year. Nothing was scheduled.
sms-refused-bad-setting = That setting is not possible. Nothing was changed.
sms-refused-account-not-active = This account is closed or frozen. Please contact the operator.
sms-refused-unknown-reference = No payment from your account has that reference.
sms-refused-confirmation-mismatch = Your OK does not match the payment the bank read. Nothing was paid. Send the payment again with new rows.
sms-refused-callback-required = This amount needs a callback: pay by SMS with PAYC from your phone. Nothing was paid.
sms-refused-printed-recipe-limit = Refused: too large for the printed checksums of this envelope. Pay less, or ask your agent for a new envelope. Nothing was paid.
sms-locked-now = Envelope now locked after { $failures } wrong codes; visit an agent.
sms-cross-out = Cross out row { $row }.

sms-help = PAY env payee amount row sum | PAYG/PAYC env row coded-payee amount+add size sum | BAL/STMT env row TAN | REG coded-new env row sum. Guide: your agent
sms-paid-low = PAID { $instruction } REF { $reference } FEE { $fee }
sms-paid-grid = PAID { $instruction } { $proof } REF { $reference }
sms-paid-plain = PAID { $amount } to { $payee } REF { $reference }. No row left for a coded proof: register a new envelope.
sms-paid-scheduled = PAID { $amount } to { $payee } as scheduled REF { $reference } { $proof }
sms-paid-at-terminal = PAID { $amount } to { $payee } at a terminal REF { $reference } { $proof }
sms-paid-on-web = PAID { $amount } to { $payee } on the web page REF { $reference }
sms-callback = CHECK { $instruction } { $proof } SUM { $sum }. OK? Send OK { $payer } { $row } { $tan } ROW SUM
sms-received-coded = RECEIVED { $amount } FROM { $payer } ROW { $row } TAN { $tan } REF { $reference }. Take off the row's add-to-amount and minus.
sms-received-plain = RECEIVED { $amount } FROM { $payer } REF { $reference }.
sms-received-plain-rows-out = RECEIVED { $amount } FROM { $payer } REF { $reference }. Get a new envelope and register it for coded notices.
sms-scheduled = SCHEDULED { $amount } to { $payee } on { $due } REF { $reference } { $proof }
sms-balance = BALANCE { $amount }
sms-registered = Envelope { $new } is now registered to your account. Envelope { $old } is closed. { $proof }
sms-setting-changed = DONE: { $what }. { $proof }
sms-dispute-filed = Report for payment { $reference } received. The operator decides; the payee keeps the money until then. A fee may apply. { $proof }

sms-done-daily-limit = daily limit { $amount }
sms-done-daily-limit-removed = daily limit removed
sms-done-weekly-limit = weekly limit { $amount }
sms-done-weekly-limit-removed = weekly limit removed
sms-done-payment-limit = limit per payment { $amount }
sms-done-payment-limit-removed = limit per payment removed
sms-done-payee-limit = daily limit to { $payee } { $amount }
sms-done-payee-limit-removed = daily limit to { $payee } removed
sms-done-callback-from = callback from { $amount } up
sms-done-callback-always = callback for every payment
sms-done-callback-threshold = callback only above your threshold
sms-done-web-password = web password set
sms-done-language = language { $language }

sms-statement-head = STMT
sms-statement-paid-to = { $date } TO { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-received-from = { $date } FROM { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-fee = { " " }fee { $fee }
sms-statement-balance = BALANCE { $amount }
sms-statement-cash = cash
sms-statement-exchange = exchange

sms-purse-statement-head = PURSE BALANCE { $amount }
sms-purse-statement-in = { $date } FROM { $counterparty } { $amount }
sms-purse-statement-out = { $date } TO { $counterparty } { $amount }
sms-purse-statement-empty = no payments yet
sms-purse-statement-operator = operator
