# Pages web du titulaire de compte, français.
#
# Glossaire :
#   envelope   enveloppe (la feuille de codes TAN)
#   row        ligne ; « cross out » = barrer la ligne
#   TAN        code TAN (3 chiffres d'une ligne)
#   balance    solde
#   statement  relevé de compte

web-title-login = Connexion
web-title-statement = Relevé de compte
web-title-payment = Paiement
web-your-account = Votre compte
web-account-number = Numéro de compte
web-password = Mot de passe (à définir par SMS : PASSWORD enveloppe ligne SUM mot-de-passe)
web-unused-row = Une ligne non utilisée de votre enveloppe
web-its-tan = Son code TAN
web-log-in = Se connecter
web-login-uses-row = La connexion utilise cette ligne : barrez-la.
web-login-failed = Échec de connexion : numéro de compte, mot de passe, ligne ou code TAN erroné.
web-form-expired = Votre formulaire de connexion a expiré. Veuillez réessayer.
web-envelope-busy = Votre enveloppe était occupée. Veuillez réessayer avec une autre ligne.
web-login-blocked = La connexion web est bloquée après trop de mots de passe erronés. Définissez-en un nouveau par SMS : PASSWORD enveloppe ligne SUM mot-de-passe.
web-envelope-locked = Votre enveloppe est bloquée après trop de codes erronés. Passez chez un agent avec votre pièce d'identité.
web-row-used = Cette ligne a déjà servi. Utilisez une ligne non barrée.
web-account-heading = Compte { $number }
web-balance = Solde :
web-column-date = Date
web-column-counterparty = Contrepartie
web-column-what = Libellé
web-column-reference = Référence
web-column-amount = Montant
web-column-fee = Frais
web-counterparty-cash = espèces
web-counterparty-exchange = change
web-counterparty-fee = frais
web-older = Opérations plus anciennes
web-pay-heading = Payer
web-payee = Numéro de compte du bénéficiaire
web-amount = Montant
web-pay = Payer
web-pay-uses-row = Le paiement utilise cette ligne : barrez-la.
web-log-out = Se déconnecter
web-payment-heading = Paiement
web-back = Retour au relevé
web-paid = PAYÉ { $amount } REF { $reference }
web-language = Langue :
