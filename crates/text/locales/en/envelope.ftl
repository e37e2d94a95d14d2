# The printed envelope, English. Printed in WinAnsi (Latin-1) with Helvetica and Courier.
#
# Glossary:
#   envelope   this printed card of rows and grids
#   row        one numbered line of the rows table; "cross out" a used row
#   TAN        the 3-digit code of a row
#   checksum   the 6 digits worked out from a row's recipe (SUM in messages)
#   add-to-amount, minus   the columns a payee's coded notice is offset by

envelope-fold = fold here - the printed side of the other page faces inwards
envelope-title = { $operator } - SMS payment envelope
envelope-number-label = Envelope number (EUIN)
envelope-rows-inside = { $rows } rows inside. Worth nothing until registered to an account.
envelope-register = Register: send  REG { $euin } <current envelope> <row> <TAN>
envelope-register-to = to { $number } (an agent registers your first envelope).
envelope-seal = Do not accept this envelope if its seal is broken.
envelope-secret = Envelope { $euin } - SECRET. Cross out each row once used.
envelope-rows-header = row g add-to-amount   TAN minus  checksum recipe
envelope-howto-1 = Low (small payments):  PAY <envelope> <payee> <amount> <row> <checksum>. Checksum: the row's six terms; LS = digits before
envelope-howto-2 = the point, Ak = k-th digit of the payee from the right, Sk = k-th digit of the amount from the left, T = sum of all the amount's
envelope-howto-3 = digits; add the number after +, keep the last digit.   Middle:  PAYG <envelope> <row> <payee: first 2 digits, then for each of
envelope-howto-4 = the last 10 its code in the row's grid at that position> <amount + add-to-amount> <size code in that grid> <the row's checksum>.
envelope-howto-5 = High: the same with PAYC; the bank echoes it with a bank row, its TAN and SUM (that row's checksum: check it); if right, send
envelope-howto-6 = OK <envelope> <bank row> <bank TAN> <your next row> <that row's checksum over the payee and amount you mean>.
envelope-howto-7 = Settings (LIMIT, DIALBACK, HIGH, PASSWORD, DISPUTE, LANG) and REG end with <row> <that row's checksum over the setting number>.
envelope-howto-8 = A reply from the bank always shows a row and its TAN (or checksum): check it against this card, then cross that row out.
envelope-howto-9 = Never tell anyone these numbers. Keep the last row to register your next envelope (REG).
