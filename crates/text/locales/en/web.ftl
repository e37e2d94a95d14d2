# The account holder's web pages, English.
#
# Glossary:
#   envelope   the printed TAN envelope
#   row        one numbered line of the envelope; "cross out" a used row
#   TAN        the 3-digit code of a row
#   balance    money available in the account
#   statement  the list of payments

web-title-login = Log in
web-title-statement = Statement
web-title-payment = Payment
web-your-account = Your account
web-account-number = Account number
web-password = Password (set by SMS: PASSWORD envelope row SUM password)
web-unused-row = An unused row of your envelope
web-its-tan = Its TAN
web-log-in = Log in
web-login-uses-row = The row is used up by logging in: cross it out.
web-login-failed = Login failed: the account number, password, row or TAN is wrong.
web-form-expired = Your login form expired. Please try again.
web-envelope-busy = Your envelope was busy. Please try again with another row.
web-login-blocked = Web login is blocked after too many wrong passwords. Set a new one by SMS: PASSWORD envelope row SUM password.
web-envelope-locked = Your envelope is locked after too many wrong codes. Visit an agent with your ID.
web-row-used = That row was used before. Use a row you have not crossed out.
web-account-heading = Account { $number }
web-balance = Balance:
web-column-date = Date
web-column-counterparty = Counterparty
web-column-what = What
web-column-reference = Reference
web-column-amount = Amount
web-column-fee = Fee
web-counterparty-cash = cash
web-counterparty-exchange = exchange
web-counterparty-fee = fee
web-older = Older entries
web-pay-heading = Pay
web-payee = Payee account number
web-amount = Amount
web-pay = Pay
web-pay-uses-row = The row is used up by paying: cross it out.
web-log-out = Log out
web-payment-heading = Payment
web-back = Back to the statement
web-paid = PAID { $amount } REF { $reference }
web-language = Language:
